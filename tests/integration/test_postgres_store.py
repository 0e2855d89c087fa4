"""The Postgres store on a real server: what the in-memory double cannot show."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from domain.policy import load_policy
from domain.timers.sla_arrival import SlaArrival, SlaTimer
from schemas.deadletter import DeadLetter
from schemas.sla import Response
from sinks.base import BatchWrite, RejectedRecord, StaleRead, TimerRow
from sinks.postgres import PostgresStore

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
SLA = SlaArrival(load_policy())


def sla_row(timer: SlaTimer, stored: bool = False, seq: int = 0) -> TimerRow:
    return TimerRow(SLA.name, timer.call_id, seq, 1, SLA.encode(timer), timer.next_deadline, stored)


async def test_timer_rows_round_trip_and_fire_by_partition(database_url):
    store = await PostgresStore.connect(database_url)
    try:
        timer = SlaTimer("c1", Response.SECOND, T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=15),
                         "district-1", dispatched_at=T0 + timedelta(minutes=1))
        async with store.transaction() as tx:
            await tx.write(BatchWrite(timers=[sla_row(timer)]))
        async with store.transaction() as tx:
            [row] = await tx.lock_timers(["c1"])
            assert row.stored and SLA.decode(row.state) == timer
            assert row.next_deadline_at == T0 + timedelta(minutes=10)
            assert [r.call_id for r in await tx.due_timers(T0 + timedelta(minutes=11), [1], 10)] == ["c1"]
            assert await tx.due_timers(T0 + timedelta(minutes=11), [0, 2], 10) == []
            assert await tx.due_timers(T0 + timedelta(minutes=11), [], 10) == []
        assert await store.count_running_timers() == {"sla_arrival": 1}
    finally:
        await store.close()


async def test_a_lagging_worker_never_overwrites_a_timer_another_worker_created(database_url):
    """Suspected in review: during a rebalance, worker A reads no timer for a call (a missing row cannot
    be locked), worker B creates it and records the team's arrival, then A inserts its fresh timer over
    B's. Reproduced with two real transactions; the store now refuses A's write (StaleRead, retried)."""
    store = await PostgresStore.connect(database_url)
    fresh = SlaTimer("c1", Response.FIRST, T0, T0 + timedelta(minutes=15), T0 + timedelta(minutes=20), "d")
    arrived = fresh._replace(arrived_at=T0 + timedelta(minutes=5))
    a_has_read = asyncio.Event()
    b_committed = asyncio.Event()

    async def worker_a() -> None:
        async with store.transaction() as tx:
            assert await tx.lock_timers(["c1"]) == []  # nothing to lock yet
            a_has_read.set()
            await b_committed.wait()
            await tx.write(BatchWrite(timers=[sla_row(fresh)]))

    async def worker_b() -> None:
        await a_has_read.wait()
        async with store.transaction() as tx:
            assert await tx.lock_timers(["c1"]) == []
            await tx.write(BatchWrite(timers=[sla_row(arrived)]))
        b_committed.set()

    try:
        results = await asyncio.gather(worker_a(), worker_b(), return_exceptions=True)
        assert isinstance(results[0], StaleRead), results
        async with store.transaction() as tx:
            [row] = await tx.lock_timers(["c1"])
        assert SLA.decode(row.state) == arrived, "the newer state survives"
        assert row.next_deadline_at is None
    finally:
        await store.close()


async def test_dead_letters_keep_every_original_byte_even_when_the_topic_copy_is_cut(database_url):
    store = await PostgresStore.connect(database_url)
    original = bytes(range(256)) * 4000  # 1 MB, not even UTF-8
    key = b"\xff" * 600_000
    letter = DeadLetter(event_id="dl-1", source_topic="t", source_partition=0, source_offset=7, source_key="cut",
                        reason="invalid_json", error="e", original_value_base64="", dead_lettered_at=T0)
    try:
        async with store.transaction() as tx:
            stored = await tx.write(BatchWrite(dead_letters=[RejectedRecord(letter, original, key)]))
        assert stored.dead_letter_ids == {"dl-1"}
        row = await store.pool.fetchrow("SELECT original_value, original_key FROM dead_letters")
        assert bytes(row["original_value"]) == original and bytes(row["original_key"]) == key
    finally:
        await store.close()
