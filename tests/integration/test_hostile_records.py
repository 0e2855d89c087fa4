"""Issue 8's acceptance: every record that once froze a worker, sent to a running worker on Apache Kafka,
is dead-lettered (or stored) with a clear reason, valid calls after it on every partition are processed,
a restarted worker does the same, and a stopped worker closes its clients."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from sinks.queries import dead_letters, stored_call_ids, timer_events_of
from streams import topics
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def hostile_records(factory: Any, tag: str) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, expected dead-letter reason); an empty reason means the record is valid and stored."""
    def call(**change: Any) -> bytes:
        return json.dumps(factory(**change)).encode()

    duplicate = call(call_id=f"{tag}-dup", weapon_present=True)[:-1] + b', "weapon_present": false}'
    return [
        (None, None, "tombstone"),
        (f"{tag}-tomb".encode(), None, "tombstone"),
        (b"x", call(call_id=f"{tag}-y9999", occurred_at="9999-12-31T23:00:00-05:00",
                    person_in_crisis_is_caller=False), "implausible_time"),
        (b"x", call(call_id=f"{tag}-y1", occurred_at="0001-01-01T00:00:00+05:00"), "implausible_time"),
        (b"k" * 600_000, b'{"type": "call.received"}', "missing_field"),
        (b"x", call(call_id=f"{tag}-2099", occurred_at="2099-01-01T00:00:00Z"), "implausible_time"),
        (b"x", call(call_id=f"{tag}-number", occurred_at=1793541600), "invalid_field"),
        (f"{tag}-dup".encode(), duplicate, "duplicate_key"),
        (b"x", call(call_id=f"{tag}-ansi", district="north\u001b[31m"), "invalid_field"),
        (f"{tag}-literal".encode(), call(call_id=f"{tag}-literal", district="d \\u0000 x"), ""),
        (f"{tag}-concerns".encode(), call(call_id=f"{tag}-concerns", concerns=["mental_health"] * 3), ""),
    ]


async def publish_to(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, int]]) -> list[
        tuple[int, int]]:
    """Publish (key, value, partition) records in order; returns (partition, offset) of each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        positions = []
        for key, value, partition in records:  # one at a time: the order across partitions is the test's
            if key is None and value is None:  # send() refuses this; other clients do produce it
                batch = producer.create_batch()
                batch.append(key=None, value=None, timestamp=None)
                batch.close()
                meta = await (await producer.send_batch(batch, topic, partition=partition))
            else:
                meta = await (await producer.send(topic, value, key=key, partition=partition))
            positions.append((meta.partition, meta.offset))
        return positions
    finally:
        await producer.stop()


async def send_round(env: Any, factory: Any, tag: str) -> tuple[dict[tuple[int, int], str], list[str], list[str]]:
    """Hostile records spread over the partitions, each followed by a valid call on every partition, and
    on-time co-responder teams behind the 2099 call. Returns expected reasons by position, and call ids."""
    hostile = hostile_records(factory, tag)
    now = datetime.now(UTC)
    records: list[tuple[bytes | None, bytes | None, int]] = []
    expected: list[tuple[int, str]] = []  # index into records -> reason
    valid: list[str] = []
    for n, (key, value, reason) in enumerate(hostile):
        partition = n % env.settings.partitions
        if reason:
            expected.append((len(records), reason))
        else:
            valid.append(json.loads(value or b"{}")["call_id"])
        records.append((key, value, partition))
        for p in range(env.settings.partitions):
            call_id = f"{tag}-after{n}-p{p}"
            valid.append(call_id)
            records.append((call_id.encode(), json.dumps(factory(call_id=call_id, event_id=f"{call_id}-e",
                                                                occurred_at=now.isoformat())).encode(), p))
    on_time = []
    for n in range(3):  # behind the 2099 call on its partition: each team arrives in time
        call_id = f"{tag}-team{n}"
        on_time.append(call_id)
        body = factory(call_id=call_id, event_id=f"{call_id}-e", occurred_at=now.isoformat(),
                       person_in_crisis_is_caller=False)
        arrival = {"type": "unit.arrived", "event_id": f"{call_id}-arr", "call_id": call_id,
                   "occurred_at": (now + timedelta(seconds=1)).isoformat(), "unit_id": "CRU1",
                   "unit_type": "co_responder"}
        records += [(call_id.encode(), json.dumps(body).encode(), 5 % env.settings.partitions),
                    (call_id.encode(), json.dumps(arrival).encode(), 5 % env.settings.partitions)]
    positions = await publish_to(env.settings.kafka_bootstrap, env.topic(topics.CALLS), records)
    return {positions[index]: reason for index, reason in expected}, valid, on_time


async def check_round(env: Any, expected: dict[tuple[int, int], str], valid: list[str], on_time: list[str]) -> None:
    db = env.settings.database_url

    async def all_valid_stored() -> bool:
        return await stored_call_ids(db, valid + on_time) == set(valid + on_time)

    await wait_until(all_valid_stored, 90)

    async def letters() -> dict[tuple[int, int], str] | None:
        found = {(row["source_partition"], row["source_offset"]): row["reason"]
                 for row in await dead_letters(db, env.topic(topics.CALLS))}
        return found if expected.keys() <= found.keys() else None

    found = await wait_until(letters, 60)
    assert {position: found[position] for position in expected} == expected
    rows = {(r["source_partition"], r["source_offset"]): r for r in await dead_letters(db, env.topic(topics.CALLS))}
    for position in expected:
        assert rows[position]["error"], "every dead letter says why"
    assert await timer_events_of(db, on_time) == [(call_id, "sla.met") for call_id in on_time]


async def test_hostile_records_never_halt_a_worker_nor_a_restarted_one(pipeline_env, call_received_factory):
    env = pipeline_env
    worker = env.worker()
    await check_round(env, *await send_round(env, call_received_factory, "r1"))

    # A graceful stop closes what the worker opened (the publisher's producer was once left open).
    worker.stop()
    assert worker.process is not None and worker.process.returncode == 0, worker.log_tail()
    assert "Unclosed" not in worker.log_tail(200_000), worker.log_tail()

    # A restarted worker reads on from the committed offsets and handles the same kinds of records.
    env.worker()
    await check_round(env, *await send_round(env, call_received_factory, "r2"))

    letters = await dead_letters(env.settings.database_url, env.topic(topics.CALLS))
    huge = [row for row in letters if row["original_key"] and len(row["original_key"]) == 600_000]
    assert len(huge) == 2 and all(row["source_key"].endswith("(600000 bytes, cut)") for row in huge)
