"""Publishing what a batch emits: all messages sent at once, then every delivery awaited.

A batch is acknowledged only after its messages are delivered, so a crash can replay a batch
(deterministic event ids make the duplicate harmless) but never lose one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

import faust


@dataclass(frozen=True)
class OutboundMessage:
    topic: str
    key: bytes | None
    value: bytes


class Publisher(Protocol):
    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Send all messages and return once the broker acknowledged every one."""
        ...


class FaustPublisher:
    """Publishes through the Faust app's producer, skipping per-message codecs and awaits."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        producer = self.app.producer
        deliveries: list[Awaitable[object]] = []
        for message in messages:
            # send() only appends to the producer's batch and returns the delivery future.
            deliveries.append(await producer.send(message.topic, message.key, message.value, None, None, None))
        await asyncio.gather(*deliveries)


class ListPublisher:
    """Test double: keeps what was published, in order."""

    def __init__(self) -> None:
        self.messages: list[OutboundMessage] = []

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        self.messages.extend(messages)

    def on(self, topic: str) -> list[OutboundMessage]:
        return [m for m in self.messages if m.topic == topic]
