"""`crisis demo`: the whole pipeline on an embedded broker and Postgres, with a summary at the end."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import time
import uuid
from typing import Any

from crisis.ingest.auth import hash_token, new_token
from crisis.publish import publish_events
from crisis.services import (
    EmbeddedPostgres,
    IngestProcess,
    ServiceError,
    TansuBroker,
    WorkerProcess,
    create_database,
    free_port,
)
from crisis.simulate import City, SimulatedEvent, malformed_events
from domain.policy import load_policy
from sinks.migrate import migrate
from sinks.queries import pipeline_counts
from streams import topics
from streams.config import Settings
from streams.security import kafka_client_options
from streams.topics import ensure_topics


async def wait_for_counts(database_url: str, call_prefix: str, topic: str, calls: int, lifecycle: int,
                          dead: int, timeout_seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_seconds
    while True:
        counts = await pipeline_counts(database_url, call_prefix, topic)
        done = (counts["decisions_stored"] >= calls and counts["lifecycle_events_stored"] >= lifecycle
                and counts["dead_lettered"] >= dead)
        if done or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.25)


def run_demo(calls: int, malformed: int, seed: int, timeout_seconds: float, progress: bool) -> dict[str, Any]:
    """Start what is missing, run one worker over a simulated stream, stop everything, summarise."""
    started = time.monotonic()
    run = uuid.uuid4().hex[:6]
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
        on_tansu = not bootstrap  # tansu has no idempotent producers (InitProducerId)
        if not bootstrap:
            bootstrap = stack.enter_context(TansuBroker()).bootstrap
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            pg = stack.enter_context(EmbeddedPostgres())
            asyncio.run(create_database(pg.url(), "crisis"))
            database_url = pg.url("crisis")
        asyncio.run(migrate(database_url))
        # A fresh topic prefix and consumer group per run: reruns on a shared broker never mix.
        settings = dataclasses.replace(
            Settings.from_env(), kafka_bootstrap=bootstrap, database_url=database_url,
            topic_prefix=f"demo-{run}.", app_id=f"crisis-demo-{run}", metrics_port=free_port(),
            # The simulated day runs far faster than real time: deadlines follow event time.
            timer_clock="event", broker_session_timeout_seconds=10.0,
            pseudonym_key=os.environ.get("CRISIS_PSEUDONYM_KEY") or secrets.token_hex(32),
            kafka_idempotent_producer=Settings.from_env().kafka_idempotent_producer and not on_tansu,
        )
        asyncio.run(ensure_topics(settings))
        worker = WorkerProcess(settings.as_env(), name="demo-worker").start()
        stack.callback(worker.stop)
        # The HTTP front door, as a center without Kafka access would use it.
        token = new_token()
        ingest = IngestProcess({
            **settings.as_env(), "CRISIS_INGEST_PORT": str(free_port()), "CRISIS_INGEST_METRICS_PORT": "0",
            "CRISIS_INGEST_TOKENS": f"stl-911={hash_token(token)}",
        }, name="demo-ingest").start()
        stack.callback(ingest.stop)

        city = City(load_policy(), seed=seed, run_tag=run)
        events = city.events(calls)
        over_http, over_kafka = split_by_partition(events, settings.partitions)
        over_kafka += list(malformed_events(malformed, seed))
        events = over_http + over_kafka
        lifecycle = sum(1 for e in events if e.type not in ("call.received", "malformed"))
        topic = settings.topic(topics.CALLS)
        asyncio.run(_publish(bootstrap, topic, over_kafka, ingest.url, token, over_http, progress,
                             kafka_client_options(settings), settings.kafka_idempotent_producer))
        counts = asyncio.run(wait_for_counts(database_url, city.call_prefix, settings.topic(topics.CALLS),
                                             calls, lifecycle, malformed, timeout_seconds))
        if not worker.alive():
            raise ServiceError(f"the worker stopped unexpectedly:\n{worker.log_tail()}")
        complete = counts["decisions_stored"] >= calls and counts["dead_lettered"] >= malformed
    return {
        "calls_sent": calls,
        "events_sent": len(events),
        "events_posted_http": len(over_http),
        "malformed_sent": malformed,
        **counts,
        "complete": complete,
        "broker": "external" if os.environ.get("KAFKA_BOOTSTRAP") else "tansu (embedded)",
        "database": "external" if os.environ.get("DATABASE_URL") else "postgresql (embedded)",
        "elapsed_seconds": round(time.monotonic() - started, 2),
    }


def split_by_partition(events: list[SimulatedEvent], partitions: int) -> tuple[list[SimulatedEvent],
                                                                              list[SimulatedEvent]]:
    """The events of the calls Kafka puts on partition 0 (sent over HTTP), and the rest (sent to Kafka).

    Splitting by partition keeps each partition fed by one path, in time order, so the worker's
    event-time watermark sees the same stream as if everything came one way.
    """
    from aiokafka.partitioner import DefaultPartitioner

    every = list(range(partitions))
    over_http = [e for e in events if DefaultPartitioner()(e.key.encode(), every, every) == 0]
    chosen = {id(e) for e in over_http}
    return over_http, [e for e in events if id(e) not in chosen]


async def post_events(url: str, token: str, events: list[SimulatedEvent], on_posted: Any = None,
                      batch: int = 100) -> int:
    """POST the events to /v1/events as NDJSON batches, in order; a 503 is retried after its Retry-After."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    posted = 0
    async with aiohttp.ClientSession() as session:
        for start in range(0, len(events), batch):
            body = b"".join(e.value + b"\n" for e in events[start:start + batch])
            for _attempt in range(30):
                async with session.post(url + "/v1/events", data=body, headers=headers) as response:
                    if response.status == 202:
                        break
                    if response.status != 503:
                        raise ServiceError(f"ingest answered {response.status}: {(await response.text())[:2000]}")
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            else:
                raise ServiceError("ingest stayed unavailable (503)")
            posted += len(events[start:start + batch])
            if on_posted is not None:
                on_posted(posted)
    return posted


async def _publish(bootstrap: str, topic: str, events: list[SimulatedEvent], ingest_url: str, token: str,
                   over_http: list[SimulatedEvent], progress: bool, options: dict[str, Any],
                   idempotent: bool) -> None:
    """Kafka and HTTP at once, each path in time order."""
    if not progress:
        await asyncio.gather(
            publish_events(bootstrap, topic, events, client_options=options, idempotent=idempotent),
            post_events(ingest_url, token, over_http))
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        kafka = bar.add_task("publishing call events to Kafka", total=len(events))
        http = bar.add_task("posting call events to the ingest service", total=len(over_http))
        await asyncio.gather(
            publish_events(bootstrap, topic, events, on_progress=lambda n: bar.update(kafka, completed=n),
                           client_options=options, idempotent=idempotent),
            post_events(ingest_url, token, over_http, on_posted=lambda n: bar.update(http, completed=n)))
