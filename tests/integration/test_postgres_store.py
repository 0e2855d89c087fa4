"""The Postgres store on a real server: what the in-memory double cannot show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.sla import SlaTimer
from schemas.deadletter import DeadLetter
from schemas.sla import Response
from sinks.base import BatchWrite
from sinks.postgres import PostgresStore

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


async def test_a_restarted_timer_replaces_every_field_of_the_old_one(database_url):
    store = await PostgresStore.connect(database_url)
    try:
        old = SlaTimer("c1", Response.SECOND, T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=15), 1,
                       "district-1", warned=True, closed_at=T0 + timedelta(minutes=11))
        new = SlaTimer("c1", Response.FIRST, T0 + timedelta(minutes=20), T0 + timedelta(minutes=35),
                       T0 + timedelta(minutes=40), 1, "district-1")
        for timer in (old, new):
            async with store.transaction() as tx:
                await tx.write(BatchWrite(timers=[timer]))
        async with store.transaction() as tx:
            assert (await tx.lock_timers(["c1"]))["c1"] == new
            assert [t.call_id for t in await tx.due_timers(T0 + timedelta(minutes=36), None, 10)] == ["c1"]
    finally:
        await store.close()


async def test_dead_letters_keep_every_original_byte_even_when_the_topic_copy_is_cut(database_url):
    store = await PostgresStore.connect(database_url)
    original = bytes(range(256)) * 4000  # 1 MB, not even UTF-8
    letter = DeadLetter(event_id="dl-1", source_topic="t", source_partition=0, source_offset=7, source_key=None,
                        reason="invalid_json", error="e", original_value_base64="", dead_lettered_at=T0)
    try:
        async with store.transaction() as tx:
            stored = await tx.write(BatchWrite(dead_letters=[(letter, original)]))
        assert stored.dead_letter_ids == {"dl-1"}
        assert bytes(await store.pool.fetchval("SELECT original_value FROM dead_letters")) == original
    finally:
        await store.close()
