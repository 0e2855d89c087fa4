"""Publishing recorded or simulated events to ``crisis.calls.v1``, keyed by call id."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from crisis.simulate import SimulatedEvent

CHUNK = 2000


@dataclass(frozen=True)
class PublishResult:
    events: int
    elapsed_seconds: float


async def publish_events(
    bootstrap: str,
    topic: str,
    events: Iterable[SimulatedEvent],
    rate_per_second: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    at_event_time: bool = False,
) -> PublishResult:
    """Publish in order; ``rate_per_second`` paces the stream, ``None`` sends as fast as possible.

    ``at_event_time`` sends each event when the wall clock reaches its ``occurred_at`` (a live
    run of a stream made by ``retime``). Each chunk's deliveries are awaited before the next, so
    the count returned was acknowledged.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    sent = 0
    try:
        pending: list[asyncio.Future[object]] = []
        for event in events:
            if rate_per_second:
                ahead = sent / rate_per_second - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            elif at_event_time:
                ahead = (event.occurred_at - datetime.now(UTC)).total_seconds()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            timestamp_ms = int(event.occurred_at.timestamp() * 1000) if event.occurred_at else None
            pending.append(await producer.send(topic, event.value, key=event.key.encode(), timestamp_ms=timestamp_ms))
            sent += 1
            if len(pending) >= CHUNK or rate_per_second or at_event_time:
                await asyncio.gather(*pending)
                pending.clear()
                if on_progress:
                    on_progress(sent)
        await asyncio.gather(*pending)
        if on_progress:
            on_progress(sent)
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
