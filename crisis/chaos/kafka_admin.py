"""What the suite asks the brokers: whole topics, partition leaders, replication health, consumer lag.

Every call takes the client options of ``streams.security.kafka_client_options``, so the same
checks run against a cluster that requires SASL and TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord


@contextlib.asynccontextmanager
async def _consumer(bootstrap: str, options: Mapping[str, Any], **settings: Any):  # type: ignore[no-untyped-def]
    """A group-less consumer, stopped safely: aiokafka's stop raises CancelledError when it comes right
    after start (its background task is cancelled before it ever ran), so let that task start first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **settings,
                                **options)
    await consumer.start()
    try:
        yield consumer
    finally:
        await asyncio.sleep(0.05)
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout_seconds: float = 60) -> list[TopicPartition]:
    """The topic's partitions, once the metadata has them."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        partitions = consumer.partitions_for_topic(topic) or set()
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no partitions in the metadata")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)


async def read_topic(bootstrap: str, options: Mapping[str, Any], topic: str,
                     timeout_seconds: float = 300) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in ``topic``, all partitions from the beginning, in partition then offset order."""
    async with _consumer(bootstrap, options, max_partition_fetch_bytes=2 * 1024 * 1024,
                         fetch_max_bytes=64 * 1024 * 1024) as consumer:
        deadline = time.monotonic() + timeout_seconds
        assigned = await _partitions(consumer, topic)
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        by_partition: dict[int, list[ConsumerRecord[bytes, bytes]]] = {tp.partition: [] for tp in assigned}
        while any([await consumer.position(tp) < ends[tp] for tp in assigned]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took more than {timeout_seconds} s")
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                by_partition[tp.partition].extend(records)
        return [record for partition in sorted(by_partition) for record in by_partition[partition]]


@contextlib.asynccontextmanager
async def _admin(bootstrap: str, options: Mapping[str, Any]):  # type: ignore[no-untyped-def]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000, **options)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def wait_for_brokers(bootstrap: str, options: Mapping[str, Any], count: int,
                           timeout_seconds: float = 180) -> None:
    """Until ``count`` brokers are registered (a fresh or restarted cluster takes a while)."""
    deadline = time.monotonic() + timeout_seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            async with _admin(bootstrap, options) as admin:
                brokers = (await admin.describe_cluster())["brokers"]
                if len(brokers) >= count:
                    return
                last = f"{len(brokers)} brokers"
        except Exception as exc:  # not up yet: keep asking
            last = exc
        await asyncio.sleep(1)
    raise TimeoutError(f"{count} Kafka brokers were not all up within {timeout_seconds} s (last: {last})")


async def describe_partitions(bootstrap: str, options: Mapping[str, Any],
                              topics: Sequence[str]) -> list[dict[str, Any]]:
    """(topic, partition, leader, replicas, isr) of every partition of ``topics``."""
    async with _admin(bootstrap, options) as admin:
        described = await admin.describe_topics(list(topics))
    return [{"topic": t["topic"], "partition": p["partition"], "leader": p["leader"], "replicas": p["replicas"],
             "isr": p["isr"]} for t in described for p in t["partitions"]]


async def under_replicated(bootstrap: str, options: Mapping[str, Any], topics: Sequence[str]) -> int:
    """Partitions of ``topics`` with fewer in-sync replicas than replicas (or no leader)."""
    partitions = await describe_partitions(bootstrap, options, topics)
    return sum(1 for p in partitions if p["leader"] < 0 or len(p["isr"]) < len(p["replicas"]))


async def committed_lag(bootstrap: str, options: Mapping[str, Any], group: str, topic: str) -> int | None:
    """Records of ``topic`` the consumer group has not committed yet; ``None`` when it committed nothing."""
    async with _admin(bootstrap, options) as admin:
        committed = await admin.list_consumer_group_offsets(group)
    async with _consumer(bootstrap, options) as consumer:
        partitions = await _partitions(consumer, topic)
        ends = await consumer.end_offsets(partitions)
    mine = {tp: meta.offset for tp, meta in committed.items() if tp.topic == topic}
    if not mine:
        return None
    return sum(max(0, ends[tp] - mine.get(tp, 0)) for tp in partitions)


async def group_members(bootstrap: str, options: Mapping[str, Any], group: str) -> tuple[str, int]:
    """(state, number of members) of a consumer group: ``("Stable", 2)`` once two workers share the work."""
    async with _admin(bootstrap, options) as admin:
        responses = await admin.describe_consumer_groups([group])
    for response in responses:
        for described in response.groups:
            # DescribeGroupsResponse: (error_code, group_id, group_state, protocol_type, protocol, members, ...)
            if described[1] == group:
                return str(described[2]), len(described[5])
    return "Dead", 0


async def records_by_leader(bootstrap: str, options: Mapping[str, Any], topic: str) -> dict[int, int]:
    """Records of ``topic`` per broker leading its partitions: the busiest broker leads the most."""
    partitions = await describe_partitions(bootstrap, options, [topic])
    async with _consumer(bootstrap, options) as consumer:
        ends = await consumer.end_offsets([TopicPartition(topic, p["partition"]) for p in partitions])
    load: dict[int, int] = {}
    for p in partitions:
        if p["leader"] >= 0:
            load[p["leader"]] = load.get(p["leader"], 0) + ends[TopicPartition(topic, p["partition"])]
    return load
