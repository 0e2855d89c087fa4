"""The expected outcome of a run: the input topic, as the broker holds it, through a fault-free pipeline.

The same ``CallPipeline`` the worker runs, with an in-memory store and publisher, no process, no
network, nothing to fail: each partition's records in offset order, in batches. With deadlines judged
by event time (``CRISIS_TIMER_CLOCK=event``, as the suite's workers run) the result does not
depend on where batches start and end, nor on how partitions interleave (a call's events and its
timers live on one partition), so a run under faults must store exactly this, record by record:
the same calls, decisions, lifecycle events, timer events with the same deterministic ids, the
same timer states, and the same dead letters (ids derive from topic, partition and offset).

Built from what the broker holds rather than from what the suite meant to send: a publisher
retrying through a broker failure may have written an input twice, and the pipeline must cope
with that too (a duplicate event is absorbed by its id; a duplicate malformed record is a second
record, with its own dead letter).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from domain.policy import Policy
from sinks.base import InMemoryStore
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import ListPublisher

TimerKey = tuple[str, str, int]


@dataclass
class Expected:
    """What a fault-free run stores and publishes; see ``sinks.verification.StoredState`` for the shapes."""

    calls: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    decisions: dict[str, tuple[str, str]] = field(default_factory=dict)  # event id -> (call_id, type)
    current: dict[str, str] = field(default_factory=dict)  # call_id -> event id of its current decision
    lifecycle: set[str] = field(default_factory=set)
    timer_events: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    timers: dict[TimerKey, tuple[dict[str, Any], datetime | None, str | None]] = field(default_factory=dict)
    dead_letters: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    published: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # topic -> event ids
    inbound_records: int = 0

    @property
    def accounted(self) -> int:
        """The value ``sinks.verification.accounted_records`` reaches when the run is complete."""
        overrides = sum(1 for _, kind in self.decisions.values() if kind == "triage.overridden")
        return len(self.calls) + len(self.lifecycle) + overrides + len(self.dead_letters)

    def counts(self) -> dict[str, int]:
        return {"calls": len(self.calls), "decisions": len(self.decisions), "lifecycle_events": len(self.lifecycle),
                "timer_events": len(self.timer_events), "timers": len(self.timers),
                "dead_letters": len(self.dead_letters)}


def _json_roundtrip(value: dict[str, Any]) -> dict[str, Any]:
    """The state as Postgres returns it (the store writes it with orjson, times as RFC 3339 text)."""
    return dict(orjson.loads(orjson.dumps(value)))


async def expected_outcome(records: Iterable[InboundRecord], settings: Settings, policy: Policy,
                           batch_size: int = 1000) -> Expected:
    """Run ``records`` (any order: they are split by partition, offsets kept) through an in-memory pipeline."""
    by_partition: dict[int, list[InboundRecord]] = defaultdict(list)
    count = 0
    for record in records:
        by_partition[record.partition].append(record)
        count += 1
    store, publisher = InMemoryStore(), ListPublisher()
    pipeline = CallPipeline(replace(settings, timer_clock="event"), policy, store, publisher,
                            PipelineMetrics(CollectorRegistry()))
    for partition in sorted(by_partition):
        ordered = sorted(by_partition[partition], key=lambda r: r.offset)
        for start in range(0, len(ordered), batch_size):
            await pipeline.handle(ordered[start:start + batch_size])

    expected = Expected(inbound_records=count)
    person_refs = {d.call_id: d.person_ref for d in store.decisions.values() if d.type == "triage.decided"}
    for call_id, call in store.calls.items():
        expected.calls[call_id] = (call.event_id, person_refs.get(call_id))
    latest: dict[str, tuple[datetime, str]] = {}
    for event_id, decision in store.decisions.items():
        expected.decisions[event_id] = (decision.call_id, decision.type)
        known = latest.get(decision.call_id)
        if known is None or decision.decided_at > known[0]:
            latest[decision.call_id] = (decision.decided_at, event_id)
    expected.current = {call_id: event_id for call_id, (_, event_id) in latest.items()}
    expected.lifecycle = set(store.lifecycle)
    for event_id, emitted in store.timer_events.items():
        expected.timer_events[event_id] = (emitted.kind, emitted.event.type, emitted.event.call_id)
    for key, row in store.timers.items():
        expected.timers[key] = (_json_roundtrip(dict(row.state)), row.next_deadline_at, row.failed_reason)
    for event_id, rejected in store.dead_letters.items():
        letter = rejected.letter
        expected.dead_letters[event_id] = (letter.source_partition, letter.source_offset, letter.reason)
    for message in publisher.messages:
        expected.published[message.topic].add(json.loads(message.value)["event_id"])
    return expected
