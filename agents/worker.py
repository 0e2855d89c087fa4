"""Faust wiring: the calls agent and the wall-clock SLA ticker. Thin: all logic is in ``CallPipeline``."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import prometheus_client
from faust.types import EventT, StreamT

from agents.calls import CallPipeline, InboundRecord
from domain.policy import Policy, load_policy
from sinks.postgres import PostgresStore
from streams.app import app, calls_topic, settings
from streams.metrics import PipelineMetrics
from streams.publisher import KafkaPublisher
from streams.topics import ensure_topics

log = logging.getLogger(__name__)

metrics = PipelineMetrics(prometheus_client.REGISTRY)
_pipeline: CallPipeline | None = None
_policy: Policy | None = None
_pipeline_lock = asyncio.Lock()


async def pipeline() -> CallPipeline:
    """The worker's pipeline, created on first use (the event loop must be running)."""
    global _pipeline
    async with _pipeline_lock:
        if _pipeline is None:
            store = await _connect_with_retry()
            publisher = KafkaPublisher(settings.kafka_bootstrap)
            await publisher.start()
            _pipeline = CallPipeline(settings, _policy or load_policy(settings.policy_path), store, publisher, metrics)
        return _pipeline


async def _connect_with_retry() -> PostgresStore:
    delay = 0.5
    while True:
        try:
            return await PostgresStore.connect(settings.database_url)
        except (OSError, asyncpg.PostgresError) as exc:
            log.error("cannot reach Postgres (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


def inbound(event: EventT) -> InboundRecord:
    message = event.message
    return InboundRecord(message.topic, message.partition, message.offset, message.key, message.value)


@app.agent(calls_topic)
async def process_calls(stream: StreamT) -> None:
    """Read call events in batches; acknowledge a batch only after it is stored and published.

    ``noack_take`` with explicit acks rather than ``take_events``: the latter acknowledges its
    batch in a ``finally``, so a worker stopped in the middle of a batch (say while Postgres is
    down and the batch is being retried) would commit offsets of events never stored.
    """
    handler = await pipeline()
    async for events in stream.noack_take(settings.batch_max_events, within=settings.batch_within_seconds):
        await handler.handle([inbound(event) for event in events])
        for event in events:
            await stream.ack(event)


@app.timer(settings.timer_tick_seconds)
async def fire_sla_deadlines() -> None:
    """Live operation: fire deadlines by the wall clock, also for teams that never send an event."""
    handler = await pipeline()
    if settings.timer_clock == "wall":
        await handler.fire_due_by_wall_clock()
    else:
        await handler.update_pending_gauge()


@app.task
async def start_metrics_server() -> None:
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, addr="0.0.0.0")
        log.info("metrics on :%d/metrics", settings.metrics_port)


def run_worker(policy: Policy) -> None:
    """Create the topics if needed, then run the Faust worker with ``policy`` until SIGTERM or SIGINT.

    The caller loads the policy first, so a bad file stops the worker before it starts (with the
    file and the problem named) rather than inside the running agent, where it would only be logged.
    """
    import faust

    global _policy
    _policy = policy
    log.info("triage policy %s %s", _policy.name, _policy.version)
    asyncio.run(ensure_topics(settings))
    faust.Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
