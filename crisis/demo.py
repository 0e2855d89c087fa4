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

from crisis.publish import publish_events
from crisis.services import EmbeddedPostgres, ServiceError, TansuBroker, WorkerProcess, create_database, free_port
from crisis.simulate import City, malformed_events
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

        city = City(load_policy(), seed=seed, run_tag=run)
        events = city.events(calls)
        events += list(malformed_events(malformed, seed))
        lifecycle = sum(1 for e in events if e.type not in ("call.received", "malformed"))
        topic = settings.topic(topics.CALLS)
        asyncio.run(_publish(bootstrap, topic, events, progress, kafka_client_options(settings),
                             settings.kafka_idempotent_producer))
        counts = asyncio.run(wait_for_counts(database_url, city.call_prefix, settings.topic(topics.CALLS),
                                             calls, lifecycle, malformed, timeout_seconds))
        if not worker.alive():
            raise ServiceError(f"the worker stopped unexpectedly:\n{worker.log_tail()}")
        complete = counts["decisions_stored"] >= calls and counts["dead_lettered"] >= malformed
    return {
        "calls_sent": calls,
        "events_sent": len(events),
        "malformed_sent": malformed,
        **counts,
        "complete": complete,
        "broker": "external" if os.environ.get("KAFKA_BOOTSTRAP") else "tansu (embedded)",
        "database": "external" if os.environ.get("DATABASE_URL") else "postgresql (embedded)",
        "elapsed_seconds": round(time.monotonic() - started, 2),
    }


async def _publish(bootstrap: str, topic: str, events: list, progress: bool, options: dict[str, Any],
                   idempotent: bool) -> None:
    if not progress:
        await publish_events(bootstrap, topic, events, client_options=options, idempotent=idempotent)
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("publishing call events", total=len(events))
        await publish_events(bootstrap, topic, events, on_progress=lambda n: bar.update(task, completed=n),
                             client_options=options, idempotent=idempotent)
