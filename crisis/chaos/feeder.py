"""Publishing a run's input at a steady pace, through broker failures, until every record is acknowledged.

A CAD integration does not stop sending when a broker dies: it retries. So does the feeder. The
producer is idempotent (a retry inside one producer session is never written twice); a record
whose delivery failed outright (the broker was away longer than the request timeout) is sent again
by a new producer, which may write it a second time. That is exactly what a real integration
causes, and the pipeline must absorb it: the expected outcome is computed from what the topic
holds, duplicates included (``crisis.chaos.reference``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

CHUNK = 500


class Publishable(Protocol):
    """A record to publish: ``crisis.simulate.SimulatedEvent``, or a hostile one (bytes key, no value)."""

    @property
    def key(self) -> str | bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


class Feeder:
    """Publishes ``events`` to ``topic`` at ``rate`` per second (``None``: as fast as acknowledged)."""

    def __init__(self, bootstrap: str, options: Mapping[str, Any], topic: str, events: Sequence[Publishable],
                 rate: float | None) -> None:
        self.bootstrap = bootstrap
        self.options = dict(options)
        self.topic = topic
        self.events = events
        self.rate = rate
        self.acknowledged = 0
        self.resent = 0  # records sent again after a failed delivery
        self.failures = 0  # failed deliveries seen (each retried)
        self.finished_at: float | None = None

    def _producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=256 * 1024, max_request_size=1_048_576, request_timeout_ms=20000,
                                **self.options)

    async def _start(self) -> AIOKafkaProducer:
        while True:
            producer = self._producer()
            try:
                await producer.start()
                return producer
            except Exception as exc:  # the broker is away: try again, as an integration would
                log.warning("feeder cannot connect (%s); retrying", exc)
                await producer.stop()
                await asyncio.sleep(1)

    async def run(self) -> None:
        """Publish everything; returns when every record was acknowledged once (at least)."""
        started = time.monotonic()
        producer = await self._start()
        try:
            for start in range(0, len(self.events), CHUNK):
                chunk = list(self.events[start:start + CHUNK])
                if self.rate:
                    ahead = start / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                while chunk:
                    failed = await self._send(producer, chunk)
                    self.acknowledged += len(chunk) - len(failed)
                    if failed:
                        self.failures += 1
                        self.resent += len(failed)
                        await producer.stop()
                        await asyncio.sleep(1)
                        producer = await self._start()
                    chunk = failed
        finally:
            await producer.stop()
            self.finished_at = time.monotonic()

    async def _send(self, producer: AIOKafkaProducer, chunk: list[Publishable]) -> list[Publishable]:
        """Send a chunk; returns the records whose delivery failed."""
        pending: list[tuple[Publishable, asyncio.Future[Any] | None]] = []
        for event in chunk:
            try:
                key = event.key.encode() if isinstance(event.key, str) else event.key
                pending.append((event, await producer.send(self.topic, event.value, key=key)))
            except Exception as exc:
                log.warning("feeder send failed (%s)", exc)
                pending.append((event, None))
        failed = []
        for event, future in pending:
            if future is None:
                failed.append(event)
                continue
            try:
                await future
            except Exception as exc:
                log.warning("feeder delivery failed (%s)", exc)
                failed.append(event)
        return failed
