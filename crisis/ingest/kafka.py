"""The ingest service's own Kafka producer: acks=all, idempotent, bounded in time, watched for readiness.

A request is answered 202 only after the broker acknowledged every one of its records with
acks=all, so nothing answered 202 is lost. When the brokers cannot be reached the publish fails
or times out within ``publish_timeout_seconds`` and the request gets 503 with Retry-After; a
record that reached the broker anyway is stored once, because the worker keeps each event id once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from crisis.ingest.config import IngestSettings
from streams.config import Settings
from streams.metrics import IngestMetrics
from streams.security import kafka_client_options
from streams.topics import ensure_topics

log = logging.getLogger(__name__)

Record = tuple[bytes, bytes]  # (key, value)


class PublishUnavailable(RuntimeError):
    """The records could not be published now (brokers unreachable or too slow): answer 503."""


class EventPublisher(Protocol):
    """What the HTTP handlers need; ``KafkaGate`` in production, an in-memory double in unit tests."""

    @property
    def ready(self) -> bool:
        """Whether the brokers are reachable now (``/readyz``)."""
        ...

    async def publish(self, records: Sequence[Record]) -> None:
        """Publish every record (acks=all) or raise ``PublishUnavailable``."""
        ...


class KafkaGate:
    """Owns the producer: connects (and reconnects) in the background, reports readiness, publishes."""

    def __init__(self, settings: Settings, ingest: IngestSettings, topic: str, metrics: IngestMetrics) -> None:
        self.settings = settings
        self.ingest = ingest
        self.topic = topic
        self.metrics = metrics
        self.producer: AIOKafkaProducer | None = None
        self._ready = False
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether the brokers are reachable now (``/readyz``)."""
        return self._ready

    def _set_ready(self, ready: bool) -> None:
        if ready != self._ready:
            log.info("kafka %s", "reachable: ready" if ready else "unreachable: not ready (requests get 503)")
        self._ready = ready
        self.metrics.kafka_ready.set(1 if ready else 0)

    async def start(self) -> None:
        """Start watching; returns at once (the service answers /healthz and 503s while Kafka is away)."""
        self._task = asyncio.create_task(self._keep_connected(), name="kafka-gate")

    async def stop(self) -> None:
        """Stop watching and close the producer (pending deliveries get their bounded time)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), self.ingest.publish_timeout_seconds)
            self.producer = None

    async def _connect(self) -> None:
        timeout_ms = int(self.ingest.publish_timeout_seconds * 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, **kafka_client_options(self.settings), acks="all",
            enable_idempotence=self.settings.kafka_idempotent_producer, request_timeout_ms=timeout_ms,
            # A broker that goes away must fail the publish within the request's bound, not block it.
            metadata_max_age_ms=30_000, retry_backoff_ms=100, linger_ms=0,
            # Room for many requests' records per partition batch; below message.max.bytes (1 MiB).
            max_batch_size=512 * 1024,
        )
        try:
            await asyncio.wait_for(producer.start(), self.ingest.publish_timeout_seconds * 2)
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self.producer = producer
        try:
            # Our topics with our partition count, not the broker's auto-creation default. Where the
            # service may not create topics (ACLs) they must exist: readiness checks for the topic.
            await asyncio.wait_for(ensure_topics(self.settings), self.ingest.publish_timeout_seconds * 2)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("could not check or create the topics: %r", exc)

    async def _keep_connected(self) -> None:
        interval = self.ingest.health_interval_seconds
        while True:
            try:
                if self.producer is None:
                    await self._connect()
                client = self.producer.client  # type: ignore[union-attr]
                updated = await asyncio.wait_for(client.force_metadata_update(), self.ingest.publish_timeout_seconds)
                self._set_ready(bool(updated) and self.topic in client.cluster.topics())
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, TimeoutError) as exc:
                log.debug("kafka check failed: %r", exc)
                self._set_ready(False)
            except Exception:
                log.exception("kafka check failed")
                self._set_ready(False)
            await asyncio.sleep(interval if self._ready else min(interval, 1.0))

    async def publish(self, records: Sequence[Record]) -> None:
        """Send every record, keyed by call id, and wait for all acknowledgements (acks=all)."""
        producer = self.producer
        if producer is None or not self._ready:
            raise PublishUnavailable("Kafka is not reachable")
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._send_all(producer, records), self.ingest.publish_timeout_seconds)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("publish of %d record(s) failed: %r", len(records), exc)
            raise PublishUnavailable(f"Kafka did not acknowledge the records: {type(exc).__name__}") from exc
        self.metrics.publish_duration.observe(time.perf_counter() - started)

    async def _send_all(self, producer: AIOKafkaProducer, records: Sequence[Record]) -> None:
        """Record by record into the producer's accumulator, which merges the records of concurrent
        requests into one batch per partition. (Prebuilt batches, ``send_batch``, wait for the
        partition's previous batch to drain: under concurrent requests they time out.)"""
        deliveries = [await producer.send(self.topic, value, key=key) for key, value in records]
        await asyncio.gather(*deliveries)
