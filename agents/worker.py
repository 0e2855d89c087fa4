"""Faust wiring: the calls agent and the wall-clock timer ticker. Thin: all logic is in ``CallPipeline``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import asyncpg
import prometheus_client
from faust import Stream
from faust.types import EventT, StreamT

from agents.clock import ReadPosition
from agents.decoding import InboundRecord
from agents.outcomes_feed import OutcomesFeed
from agents.pipeline import CallPipeline
from domain.policy import Policy, load_policy
from sinks.postgres import PostgresStore
from streams.app import app, calls_topic, settings
from streams.logs import logging_config
from streams.metrics import PipelineMetrics
from streams.ops_server import OpsServer
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
_ops_server: OpsServer | None = None


async def pipeline() -> CallPipeline:
    """The worker's pipeline, created on first use (the event loop must be running)."""
    global _pipeline, _publisher, _store
    async with _pipeline_lock:
        if _pipeline is None:
            policy = _policy or load_policy(settings.policy_path)
            _store = await _connect_with_retry(policy)
            _publisher = KafkaPublisher(settings.kafka_bootstrap, kafka_client_options(settings),
                                        settings.kafka_idempotent_producer)
            await _publisher.start()
            _pipeline = CallPipeline(settings, policy, _store, _publisher, metrics)
            log.info("pipeline ready: triage policy %s %s, timers by the %s clock", policy.name, policy.version,
                     settings.timer_clock)
        return _pipeline


async def _connect_with_retry(policy: Policy) -> PostgresStore:
    delay = 0.5
    while True:
        try:
            # Outcome aggregates bucket days and hours in the policy's time zone.
            return await PostgresStore.connect(settings.database_url, zone=policy.zone)
        except (OSError, asyncpg.PostgresError) as exc:
            log.error("cannot reach Postgres (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


def inbound(event: EventT[Any]) -> InboundRecord:
    message = event.message
    return InboundRecord(message.topic, message.partition, message.offset, message.key, message.value)


@app.agent(calls_topic)
async def process_calls(stream: StreamT[Any]) -> None:
    """Read call events in batches; acknowledge a batch only after it is stored and published.

    ``noack_take`` with explicit acks rather than ``take_events``: the latter acknowledges its
    batch in a ``finally``, so a worker stopped in the middle of a batch (say while Postgres is
    down and the batch is being retried) would commit offsets of events never stored.
    """
    handler = await pipeline()
    batches = cast(Stream[Any], stream).noack_take(settings.batch_max_events, within=settings.batch_within_seconds)
    async for events in batches:
        await handler.handle([inbound(event) for event in events])
        for event in events:
            await stream.ack(event)


def read_positions(handler: CallPipeline) -> dict[int, ReadPosition]:
    """How far this worker has read each of its partitions of the calls topic.

    The next offset to process is the larger of what this worker processed and what the group had
    committed (a partition taken over with no new records has processed nothing here, yet is read
    to its end). The end is the high watermark of the consumer's last fetch response: no request of
    its own (asking the broker from the consumer's thread waits behind a fetch's long poll, a second).
    """
    consumer: Any = app.consumer
    positions = {}
    for tp in consumer.assignment():
        if tp.topic != calls_topic.get_topic_name():
            continue
        committed = consumer._committed_offset.get(tp)  # Faust's record of the group's committed offset
        processed = handler.next_offsets.get(tp.partition)
        known = [offset for offset in (committed, processed) if offset is not None]
        positions[tp.partition] = ReadPosition(max(known) if known else None, consumer.highwater(tp))
    return positions


def record_consumer_lag(positions: dict[int, ReadPosition]) -> None:
    """``crisis_consumer_lag_events`` for this worker's partitions; partitions it lost are dropped."""
    for partition in _lag_reported - positions.keys():
        metrics.consumer_lag.remove(str(partition))
    _lag_reported.clear()
    for partition, position in positions.items():
        end, next_offset = position.end_offset, position.next_offset
        if end is not None and (next_offset is not None or end == 0):  # an empty partition has no lag
            metrics.consumer_lag.labels(str(partition)).set(max(0, end - (next_offset or 0)))
            _lag_reported.add(partition)


_lag_reported: set[int] = set()


@app.timer(settings.timer_tick_seconds)
async def fire_deadlines() -> None:
    """Live operation: fire deadlines by the wall clock, also for teams that never send an event,
    on the partitions this worker has read to the end; and report how far behind it is."""
    handler = await pipeline()
    try:
        positions = read_positions(handler)
    except Exception as exc:  # the consumer is not running: fire nothing by the wall clock until it is
        log.warning("cannot read partition positions (%s): wall-clock timers wait", exc)
        return
    record_consumer_lag(positions)
    if settings.timer_clock == "wall":
        await handler.fire_due_by_wall_clock(positions)
    else:
        await handler.update_pending_gauge()


async def readiness() -> dict[str, str]:
    """The checks behind ``/readyz``: Postgres and Kafka reachable, the calls agent running."""
    if _store is None or _publisher is None:
        return {"pipeline": "starting"}
    checks = {}
    for name, ping in (("postgres", _store.ping), ("kafka", _publisher.ping)):
        try:
            await asyncio.wait_for(ping(), 2.0)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unreachable: {type(exc).__name__}"
    # Faust keeps the agent's running instances (actors) in a private set: one is enough.
    actors: Any = getattr(process_calls, "_actors", ())
    running = any(actor.actor_task is not None and not actor.actor_task.done() for actor in actors)
    checks["calls_agent"] = "ok" if running else "not running"
    return checks


_outcomes_feed: OutcomesFeed | None = None


@app.timer(settings.outcomes_feed_interval_seconds)
async def publish_outcomes() -> None:
    """Publish each center's closed days on crisis.outcomes.v1, and revisions of them (``agents.outcomes_feed``)."""
    global _outcomes_feed
    await pipeline()
    if _outcomes_feed is None:
        assert _store is not None and _publisher is not None
        _outcomes_feed = OutcomesFeed(_store.pool, _publisher, settings, _store.zone, metrics)
    await _outcomes_feed.tick()


@app.task
async def start_ops_server() -> None:
    global _ops_server
    if settings.metrics_port:
        _ops_server = OpsServer(settings.metrics_port, prometheus_client.REGISTRY, readiness)
        await _ops_server.start()


@app.on_before_shutdown.connect
async def close_connections(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    """After the consumer stopped (its last batch stored and acknowledged): close our own clients."""
    if _publisher is not None:
        await _publisher.stop()
    if _store is not None:
        await _store.close()
    if _ops_server is not None:
        await _ops_server.stop()


def run_worker(policy: Policy) -> None:
    """Create the topics if needed, then run the Faust worker with ``policy`` until SIGTERM or SIGINT.

    The caller loads the policy first, so a bad file stops the worker before it starts (with the
    file and the problem named) rather than inside the running agent, where it would only be logged.
    """
    import faust

    global _policy
    _policy = policy
    metrics.start_centers_at_zero(policy.nature_codes.centers)
    asyncio.run(ensure_topics(settings))
    faust.Worker(app, loglevel=settings.log_level, quiet=True,
                 logging_config=logging_config(settings.log_format, settings.log_level)).execute_from_commandline()
