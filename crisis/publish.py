"""Publishing recorded or simulated events to ``crisis.calls.v1``, keyed by call id."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from crisis.simulate import SimulatedEvent

CHUNK = 2000


class OutgoingEvent(Protocol):
    """What can be published: a key (``None`` publishes without one), the bytes, maybe an event time."""

    @property
    def key(self) -> str | None: ...

    @property
    def value(self) -> bytes: ...

    @property
    def occurred_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class PublishResult:
    events: int
    elapsed_seconds: float


async def publish_events(
    bootstrap: str,
    topic: str,
    events: Iterable[OutgoingEvent],
    rate_per_second: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    at_event_time: bool = False,
    client_options: Mapping[str, Any] | None = None,
    idempotent: bool = True,
) -> PublishResult:
    """Publish in order; ``rate_per_second`` paces the stream, ``None`` sends as fast as possible.

    ``at_event_time`` sends each event when the wall clock reaches its ``occurred_at`` (a live
    run of a stream made by ``retime``). Deliveries are awaited every ``CHUNK`` events and
    whenever pacing leaves time to wait, so the count returned was acknowledged. Records carry no
    explicit timestamp: the broker stamps them, so retention never deletes an old recording at once.
    ``client_options``: SASL/TLS (``streams.security.kafka_client_options``). Idempotent: a retry after
    a broker failure never writes an event twice (``idempotent=False`` only for tansu, which lacks it).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotent, linger_ms=5,
                                max_batch_size=256 * 1024, **(client_options or {}))
    await producer.start()
    started = time.perf_counter()
    sent = 0
    pending: list[asyncio.Future[object]] = []

    async def flush() -> None:
        await asyncio.gather(*pending)
        pending.clear()
        if on_progress:
            on_progress(sent)

    try:
        for event in events:
            ahead = 0.0
            if rate_per_second:
                ahead = sent / rate_per_second - (time.perf_counter() - started)
            elif at_event_time and event.occurred_at is not None:
                ahead = (event.occurred_at - datetime.now(UTC)).total_seconds()
            if ahead > 0:
                await flush()  # use the wait: everything sent so far is delivered before we sleep
                await asyncio.sleep(max(0.0, ahead))
            key = event.key.encode() if event.key is not None else None
            pending.append(await producer.send(topic, event.value, key=key))
            sent += 1
            if len(pending) >= CHUNK:
                await flush()
        await flush()
    finally:
        await producer.stop()
    return PublishResult(sent, time.perf_counter() - started)


def retime(
    events: list[SimulatedEvent], start_at: datetime | None = None, speedup: float = 1.0
) -> list[SimulatedEvent]:
    """Move a stream to start at ``start_at`` (default now), its gaps divided by ``speedup``.

    For live runs on the wall clock: ``speedup=60`` plays a recorded hour in a minute.
    """
    if not events:
        return events
    first = events[0].occurred_at
    start = start_at or datetime.now(UTC)
    shifted = []
    for event in events:
        at = start + (event.occurred_at - first) / speedup
        try:
            body = json.loads(event.value)
            body["occurred_at"] = at.isoformat()
            value = json.dumps(body, separators=(",", ":")).encode()
        except ValueError:
            value = event.value  # malformed on purpose: keep the bytes as they are
        shifted.append(SimulatedEvent(at, event.key, value, event.type))
    return shifted
