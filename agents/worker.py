"""Faust wiring: the calls agent and the wall-clock timer ticker. Thin: all logic is in ``CallPipeline``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import prometheus_client
from faust.types import EventT, StreamT

from agents.clock import ReadPosition
from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from domain.policy import Policy, load_policy
from sinks.postgres import PostgresStore
from streams.app import app, calls_topic, settings
from streams.metrics import PipelineMetrics
from streams.publisher import KafkaPublisher
from streams.security import kafka_client_options
from streams.topics import ensure_topics

log = logging.getLogger(__name__)

metrics = PipelineMetrics(prometheus_client.REGISTRY)
_pipeline: CallPipeline | None = None
_publisher: KafkaPublisher | None = None
_store: PostgresStore | None = None
_policy: Policy | None = None
_pipeline_lock = asyncio.Lock()


async def pipeline() -> CallPipeline:
    """The worker's pipeline, created on first use (the event loop must be running)."""
    global _pipeline, _publisher, _store
    async with _pipeline_lock:
        if _pipeline is None:
            _store = await _connect_with_retry()
            _publisher = KafkaPublisher(settings.kafka_bootstrap, kafka_client_options(settings),
                                        settings.kafka_idempotent_producer)
            await _publisher.start()
            _pipeline = CallPipeline(settings, _policy or load_policy(settings.policy_path), _store, _publisher,
                                     metrics)
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


async def read_positions(handler: CallPipeline) -> dict[int, ReadPosition]:
    """How far this worker has read each of its partitions of the calls topic.

    The next offset to process is the larger of what this worker processed and what the group had
    committed (a partition taken over with no new records has processed nothing here, yet is read
    to its end); the end is asked of the broker.
    """
    consumer: Any = app.consumer
    assigned = [tp for tp in consumer.assignment() if tp.topic == calls_topic.get_topic_name()]
    if not assigned:
        return {}
    ends = await consumer.highwaters(*assigned)
    positions = {}
    for tp in assigned:
        committed = consumer._committed_offset.get(tp)  # Faust's record of the group's committed offset
        processed = handler.next_offsets.get(tp.partition)
        known = [offset for offset in (committed, processed) if offset is not None]
        positions[tp.partition] = ReadPosition(max(known) if known else None, ends.get(tp))
    return positions


@app.timer(settings.timer_tick_seconds)
async def fire_deadlines() -> None:
    """Live operation: fire deadlines by the wall clock, also for teams that never send an event,
    on the partitions this worker has read to the end."""
    handler = await pipeline()
    if settings.timer_clock != "wall":
        await handler.update_pending_gauge()
        return
    try:
        positions = await read_positions(handler)
    except Exception as exc:  # the broker is unreachable: fire nothing by the wall clock until it answers
        log.warning("cannot read partition positions (%s): wall-clock timers wait", exc)
        return
    await handler.fire_due_by_wall_clock(positions)


@app.task
async def start_metrics_server() -> None:
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, addr="0.0.0.0")
        log.info("metrics on :%d/metrics", settings.metrics_port)


@app.on_before_shutdown.connect
async def close_connections(sender: Any, **kwargs: Any) -> None:
    """After the consumer stopped (its last batch stored and acknowledged): close our own clients."""
    if _publisher is not None:
        await _publisher.stop()
    if _store is not None:
        await _store.close()


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
