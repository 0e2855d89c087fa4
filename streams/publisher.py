"""Publishing what a batch emits: all messages sent at once, then every delivery awaited.

``send`` hands a batch's messages to the producer and returns what to await for their delivery,
so the batch's last database writes run while the broker acknowledges; ``publish`` does both.

A batch is acknowledged only after its messages are delivered, so a crash can replay a batch
(deterministic event ids make the duplicate harmless) but never lose one.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner


@dataclass(frozen=True)
class OutboundMessage:
    topic: str
    key: bytes | None
    value: bytes
    # The partition the call's input came from: outputs follow it (no hashing, and a call's
    # events share a partition number across topics). None, or a partition the topic lacks:
    # Kafka's default key hashing.
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class Publisher(Protocol):
    async def send(self, messages: Sequence[OutboundMessage]) -> Awaitable[None]:
        """Hand all messages to the producer; the result completes once the broker acknowledged every one
        (and raises if one was refused). It must be awaited before anything counts as published."""
        ...

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Send all messages and return once the broker acknowledged every one."""
        ...


class KafkaPublisher:
    """Publishes a batch's messages as one record batch per topic partition.

    Sending record by record costs an await and a trip through the producer for each message;
    a batch per partition costs one.
    """

    # Below the broker's default message.max.bytes (1 MiB): one record batch is one message there.
    MAX_BATCH_BYTES = 512 * 1024

    def __init__(self, bootstrap: str, client_options: Mapping[str, Any] | None = None,
                 idempotent: bool = True) -> None:
        # acks=all with idempotence: a record is acknowledged once every in-sync replica has it
        # (min.insync.replicas of them, or the write is refused), and a retry after a lost
        # acknowledgement (a broker killed mid-request) is dropped by the broker instead of written twice.
        # client_options: SASL/TLS from streams.security.kafka_client_options. idempotent=False only for a
        # broker that lacks it (tansu, the demo's).
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotent, max_batch_size=self.MAX_BATCH_BYTES,
            linger_ms=0, **(client_options or {})
        )
        self.partitioner = DefaultPartitioner()

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def ping(self) -> None:
        """Raise unless a broker answers a metadata request (readiness)."""
        await self.producer.client.fetch_all_metadata()  # raises when no broker answers

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        await (await self.send(messages))

    async def send(self, messages: Sequence[OutboundMessage]) -> Awaitable[None]:
        if not messages:
            return _delivered()
        groups: dict[tuple[str, int], list[OutboundMessage]] = defaultdict(list)
        partitions: dict[str, list[int]] = {}
        for message in messages:
            if message.topic not in partitions:
                partitions[message.topic] = sorted(await self.producer.partitions_for(message.topic))
            all_partitions = partitions[message.topic]
            partition = message.partition
            if partition is None or partition >= len(all_partitions):
                partition = self.partitioner(message.key, all_partitions, all_partitions)
            groups[(message.topic, partition)].append(message)
        deliveries: list[Awaitable[object]] = []
        for (topic, partition), group in groups.items():
            batch = self.producer.create_batch()
            for message in group:
                headers = list(message.headers)  # the batch builder takes a list only
                if batch.append(key=message.key, value=message.value, timestamp=None, headers=headers) is None:
                    batch.close()  # full: send it and start the next one
                    deliveries.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = self.producer.create_batch()
                    batch.append(key=message.key, value=message.value, timestamp=None, headers=headers)
            batch.close()
            deliveries.append(await self.producer.send_batch(batch, topic, partition=partition))
        return _all_delivered(deliveries)


async def _all_delivered(deliveries: Sequence[Awaitable[object]]) -> None:
    await asyncio.gather(*deliveries)


def _delivered() -> Awaitable[None]:
    """Nothing left to wait for."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


class ListPublisher:
    """Test double: keeps what was published, in order."""

    def __init__(self) -> None:
        self.messages: list[OutboundMessage] = []

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        self.messages.extend(messages)

    async def send(self, messages: Sequence[OutboundMessage]) -> Awaitable[None]:
        await self.publish(messages)  # through publish: tests replace it to make the broker fail
        return _delivered()

    def on(self, topic: str) -> list[OutboundMessage]:
        return [m for m in self.messages if m.topic == topic]
