"""Hostile input: the named edge cases and a hypothesis fuzz of the inbound topic, mixed into a normal
stream, then a valid sentinel call. Each record must be stored or dead-lettered with a reason, within a
bounded time (reported: ``drain_seconds``), the sentinel processed, the worker never stopped (no exit,
no restart), and no dead letter's reason, error, key copy or header, and no log line, may repeat the
personal data planted in the records."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

from crisis.chaos.environment import ChaosServices
from crisis.chaos.hostile import HOSTILE_AT, PLANTED_PHONE, PLANTED_TEXT, HostileRecord, edge_cases, fuzzed, near_future
from crisis.chaos.kafka_admin import read_topic
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import Size
from crisis.chaos.stream import ChaosStream, build_stream
from crisis.simulate import SimulatedEvent
from domain.policy import load_policy
from streams import topics

NAME = "hostile_input"
DESCRIPTION = "named edge cases + hypothesis fuzz of the inbound topic, then a valid sentinel"
NORMAL_EVENTS = 3000


def hostile_stream(tag: str, seed: int, examples: int) -> tuple[ChaosStream, str]:
    """A normal stream with the hostile records mixed in after it passes their event time, a sentinel
    call, then the one record a day ahead. Returns the stream and the sentinel's call id."""
    city = build_stream(load_policy(), NORMAL_EVENTS, seed, tag)
    now = datetime.now(UTC)
    hostile: list[HostileRecord] = edge_cases(tag, now) + fuzzed(tag, examples)
    rng = random.Random(f"hostile-{seed}")
    # Only where the stream's event time has passed theirs: late records touch their own calls only.
    first = next(i for i, event in enumerate(city.events) if event.occurred_at >= HOSTILE_AT)
    events: list[SimulatedEvent | HostileRecord] = list(city.events)
    positions = sorted((rng.randrange(first, len(city.events)) for _ in hostile), reverse=True)
    order = list(range(len(hostile)))
    for position, index in zip(positions, reversed(order), strict=True):
        events.insert(position, hostile[index])  # inserted back to front: the records keep their order
    sentinel = f"{tag}-sentinel"
    last = city.events[-1].occurred_at + timedelta(seconds=1)
    body = {"type": "call.received", "event_id": f"{sentinel}-e", "call_id": sentinel, "occurred_at": last.isoformat(),
            "center_id": "stl-911", "nature_code": "MENTAL", "concerns": ["mental_health"],
            "person_in_crisis_is_caller": True, "district": "district-1"}
    events.append(SimulatedEvent(last, sentinel, json.dumps(body).encode(), "call.received"))
    events.append(near_future(tag, now))
    stream = ChaosStream(events, city.call_prefix, city.phones | {PLANTED_PHONE},  # type: ignore[arg-type]
                         (*city.free_texts, PLANTED_TEXT))
    return stream, sentinel


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    postgres = await asyncio.to_thread(services.postgres)
    deployment = services.deployment(kafka, postgres)
    tag = uuid.uuid4().hex[:8]
    stream, sentinel = await asyncio.to_thread(hostile_stream, tag, seed, size.hostile_examples)
    chaos = ChaosRun(NAME, deployment, len(stream.events), seed, size.publish_rate, size.timeout_seconds,
                     stream=stream, tag=tag)
    try:
        await chaos.prepare()
        outcome = await _finish(chaos, services)
    except BaseException:
        await chaos.close()
        raise
    problems = outcome.verdict.problems
    assert outcome.stored is not None
    if sentinel not in outcome.stored.calls:
        problems.append("the sentinel call after the hostile records was not stored")
        outcome.verdict.lost["sentinel"] += 1
    if outcome.unplanned_worker_exits:
        problems.append(f"the worker stopped {outcome.unplanned_worker_exits} time(s) on hostile input")
        outcome.verdict.unexpected["worker_exits"] += outcome.unplanned_worker_exits
    outcome.extra["hostile_records"] = sum(1 for event in stream.events if isinstance(event, HostileRecord))
    return outcome


async def _finish(chaos: ChaosRun, services: ChaosServices) -> RunOutcome:
    async def dead_letter_texts(run: ChaosRun) -> dict[str, str]:
        """What a dead letter says beside the original bytes: reason, error, key copy, and the headers."""
        records = await read_topic(run.deployment.kafka_bootstrap, run.deployment.kafka_options,
                                   run.topic(topics.DEADLETTER))
        sources: dict[str, str] = {}
        for record in records:
            letter = json.loads(record.value or b"{}")
            sources[f"dead letter {record.partition}@{record.offset}"] = json.dumps(
                {"reason": letter.get("reason"), "error": letter.get("error"), "source_key": letter.get("source_key"),
                 "headers": [(name, value.decode("utf-8", "replace")) for name, value in (record.headers or ())]})
        return sources

    return await chaos.finish(more_sources=dead_letter_texts)

