"""The Postgres store: one transaction per batch, COPY into staging tables, idempotent upserts.

Per batch the cost is a handful of round trips whatever the batch size: COPY the rows of each
table into a temporary staging table, then one ``INSERT ... SELECT ... ON CONFLICT`` that returns
the ids stored for the first time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from domain.policy import SAFETY_FLAGS
from domain.sla import SlaTimer
from schemas.sla import Response
from schemas.triage import Route, TriageDecision
from sinks.base import BatchWrite, Stored

_TIMER_COLUMNS = (
    "call_id, response, requested_at, warning_at, breach_at, partition, district,"
    " warned, breached, arrived_at, closed_at, next_deadline_at"
)

# Staging tables live per connection and empty themselves at commit.
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS stage_calls (LIKE calls INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_decisions (LIKE triage_decisions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_call_events (LIKE call_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_timers (LIKE sla_timers INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_sla_events (LIKE sla_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_dead_letters (LIKE dead_letters) ON COMMIT DELETE ROWS;
"""


def _timer_from_row(row: asyncpg.Record) -> SlaTimer:
    return SlaTimer(
        call_id=row["call_id"],
        response=Response(row["response"]),
        requested_at=row["requested_at"],
        warning_at=row["warning_at"],
        breach_at=row["breach_at"],
        partition=row["partition"],
        district=row["district"],
        warned=row["warned"],
        breached=row["breached"],
        arrived_at=row["arrived_at"],
        closed_at=row["closed_at"],
    )


def _decision_from_row(row: asyncpg.Record) -> TriageDecision:
    return TriageDecision(
        type=row["type"],
        event_id=row["event_id"],
        call_id=row["call_id"],
        source_event_id=row["source_event_id"],
        decided_at=row["decided_at"],
        route=Route(row["route"]),
        reasons=tuple(row["reasons"]),
        policy_name=row["policy_name"],
        policy_version=row["policy_version"],
        second_response_requested=row["second_response_requested"],
        center_id=row["center_id"],
        district=row["district"],
        person_ref=row["person_ref"],
        previous_route=Route(row["previous_route"]) if row["previous_route"] else None,
        overridden_by=row["overridden_by"],
        override_reason=row["override_reason"],
    )


class PostgresTransaction:
    """One batch's reads and writes on one connection inside one transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock_timers(self, call_ids: Sequence[str]) -> dict[str, SlaTimer]:
        if not call_ids:
            return {}
        # Ordered locking: two workers briefly sharing a partition during a rebalance never deadlock.
        rows = await self.conn.fetch(
            f"SELECT {_TIMER_COLUMNS} FROM sla_timers WHERE call_id = ANY($1::text[])"
            " ORDER BY call_id FOR UPDATE",
            list(set(call_ids)),
        )
        return {row["call_id"]: _timer_from_row(row) for row in rows}

    async def latest_decisions(self, call_ids: Sequence[str]) -> dict[str, TriageDecision]:
        if not call_ids:
            return {}
        rows = await self.conn.fetch(
            "SELECT DISTINCT ON (call_id) * FROM triage_decisions WHERE call_id = ANY($1::text[])"
            " ORDER BY call_id, decided_at DESC, stored_at DESC",
            list(set(call_ids)),
        )
        return {row["call_id"]: _decision_from_row(row) for row in rows}

    async def due_timers(self, before: datetime, partition: int | None, limit: int) -> list[SlaTimer]:
        rows = await self.conn.fetch(
            f"SELECT {_TIMER_COLUMNS} FROM sla_timers"
            " WHERE next_deadline_at IS NOT NULL AND next_deadline_at < $1"
            " AND ($2::integer IS NULL OR partition = $2)"
            " ORDER BY next_deadline_at LIMIT $3 FOR UPDATE SKIP LOCKED",
            before,
            partition,
            limit,
        )
        return [_timer_from_row(row) for row in rows]

    async def _copy(self, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]) -> None:
        await self.conn.copy_records_to_table(table, records=records, columns=list(columns))

    async def write(self, batch: BatchWrite) -> Stored:
        conn = self.conn
        if batch.calls:
            columns = (
                "call_id", "event_id", "occurred_at", "center_id", "nature_code", "mpds_code", "concerns",
                "safety_flags", "person_in_crisis_is_caller", "juvenile", "district", "caller_phone",
                "person_ref",
            )
            await self._copy(
                "stage_calls",
                columns,
                [
                    (
                        c.call_id, c.event_id, c.occurred_at, c.center_id, c.nature_code, c.mpds_code,
                        [str(x) for x in c.concerns], [f for f in SAFETY_FLAGS if getattr(c, f)],
                        c.person_in_crisis_is_caller, c.juvenile, c.district, c.caller_phone, ref,
                    )
                    for c, ref in batch.calls
                ],
            )
            await conn.execute(
                f"INSERT INTO calls ({', '.join(columns)}) SELECT DISTINCT ON (call_id) {', '.join(columns)}"
                " FROM stage_calls ORDER BY call_id ON CONFLICT DO NOTHING"
            )
        decision_ids: list[str] = []
        if batch.decisions:
            columns = (
                "event_id", "type", "call_id", "source_event_id", "decided_at", "route", "reasons",
                "policy_name", "policy_version", "second_response_requested", "center_id", "district",
                "person_ref", "previous_route", "overridden_by", "override_reason",
            )
            await self._copy(
                "stage_decisions",
                columns,
                [
                    (
                        d.event_id, d.type, d.call_id, d.source_event_id, d.decided_at, d.route.value,
                        list(d.reasons), d.policy_name, d.policy_version, d.second_response_requested,
                        d.center_id, d.district, d.person_ref,
                        d.previous_route.value if d.previous_route else None, d.overridden_by, d.override_reason,
                    )
                    for d in batch.decisions
                ],
            )
            decision_ids = [
                r[0]
                for r in await conn.fetch(
                    f"INSERT INTO triage_decisions ({', '.join(columns)})"
                    f" SELECT DISTINCT ON (event_id) {', '.join(columns)} FROM stage_decisions"
                    " ORDER BY event_id ON CONFLICT DO NOTHING RETURNING event_id"
                )
            ]
        if batch.lifecycle:
            columns = ("event_id", "call_id", "type", "occurred_at", "unit_id", "unit_type", "disposition")
            await self._copy(
                "stage_call_events",
                columns,
                [
                    (
                        e.event_id, e.call_id, e.type, e.occurred_at, getattr(e, "unit_id", None),
                        str(e.unit_type) if hasattr(e, "unit_type") else None,
                        str(e.disposition) if hasattr(e, "disposition") else None,
                    )
                    for e in batch.lifecycle
                ],
            )
            await conn.execute(
                f"INSERT INTO call_events ({', '.join(columns)}) SELECT DISTINCT ON (event_id)"
                f" {', '.join(columns)} FROM stage_call_events ORDER BY event_id ON CONFLICT DO NOTHING"
            )
        if batch.timers:
            await self._copy(
                "stage_timers",
                [c.strip() for c in _TIMER_COLUMNS.split(",")],
                [
                    (
                        t.call_id, t.response.value, t.requested_at, t.warning_at, t.breach_at, t.partition,
                        t.district, t.warned, t.breached, t.arrived_at, t.closed_at, t.next_deadline,
                    )
                    for t in batch.timers
                ],
            )
            await conn.execute(
                f"INSERT INTO sla_timers ({_TIMER_COLUMNS}) SELECT DISTINCT ON (call_id) {_TIMER_COLUMNS}"
                " FROM stage_timers ORDER BY call_id ON CONFLICT (call_id) DO UPDATE SET"
                " warned = EXCLUDED.warned, breached = EXCLUDED.breached, arrived_at = EXCLUDED.arrived_at,"
                " closed_at = EXCLUDED.closed_at, next_deadline_at = EXCLUDED.next_deadline_at,"
                " updated_at = now()"
            )
        sla_ids: list[str] = []
        if batch.sla_events:
            columns = (
                "event_id", "type", "call_id", "response", "requested_at", "deadline_at", "occurred_at",
                "arrival_seconds", "district",
            )
            await self._copy(
                "stage_sla_events",
                columns,
                [
                    (
                        e.event_id, e.type, e.call_id, e.response.value, e.requested_at, e.deadline_at,
                        e.occurred_at, e.arrival_seconds, e.district,
                    )
                    for e in batch.sla_events
                ],
            )
            sla_ids = [
                r[0]
                for r in await conn.fetch(
                    f"INSERT INTO sla_events ({', '.join(columns)}) SELECT DISTINCT ON (event_id)"
                    f" {', '.join(columns)} FROM stage_sla_events ORDER BY event_id"
                    " ON CONFLICT DO NOTHING RETURNING event_id"
                )
            ]
        dead_ids: list[str] = []
        if batch.dead_letters:
            columns = (
                "event_id", "source_topic", "source_partition", "source_offset", "source_key", "reason",
                "error", "original_value", "dead_lettered_at",
            )
            await self._copy(
                "stage_dead_letters",
                columns,
                [
                    (
                        d.event_id, d.source_topic, d.source_partition, d.source_offset, d.source_key,
                        d.reason, d.error, original, d.dead_lettered_at,
                    )
                    for d, original in batch.dead_letters
                ],
            )
            dead_ids = [
                r[0]
                for r in await conn.fetch(
                    f"INSERT INTO dead_letters ({', '.join(columns)}) SELECT DISTINCT ON (event_id)"
                    f" {', '.join(columns)} FROM stage_dead_letters ORDER BY event_id"
                    " ON CONFLICT DO NOTHING RETURNING event_id"
                )
            ]
        return Stored(frozenset(decision_ids), frozenset(sla_ids), frozenset(dead_ids))


class PostgresStore:
    """A pool of connections, each prepared with its staging tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, database_url: str, max_size: int = 4) -> PostgresStore:
        async def prepare(conn: asyncpg.Connection) -> None:
            await conn.execute(_STAGING_DDL)

        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=max_size, init=prepare)
        return cls(pool)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PostgresTransaction(conn)

    async def count_running_timers(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM sla_timers WHERE next_deadline_at IS NOT NULL"))

    async def close(self) -> None:
        await self.pool.close()
