"""Test helpers to write to and read from the real broker."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def publish(bootstrap: str, topic: str, records: Iterable[tuple[str | None, bytes | None]],
                  partition: int | None = None) -> int:
    """Publish (key, value) records, hashed by key or all to ``partition``; a ``None`` value is a tombstone."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value, key=key.encode() if key is not None else None,
                                               partition=partition))
            sent += 1
        for future in futures:
            await future
    finally:
        await producer.stop()
    return sent


def as_records(events: Iterable[dict[str, Any]]) -> list[tuple[str | None, bytes]]:
    return [(event.get("call_id"), json.dumps(event).encode()) for event in events]


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record currently in ``topic`` (all partitions, from the beginning)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            for items in batch.values():
                records.extend(items)
        return records
    finally:
        await consumer.stop()
