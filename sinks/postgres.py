"""The Postgres store: one transaction per batch, one idempotent statement per table.

Per batch the cost is a handful of round trips whatever the batch size: each table gets one
``INSERT ... SELECT FROM json_to_recordset($1) ON CONFLICT ...`` (a prepared statement, no
staging table), returning the ids stored for the first time.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from domain.policy import SAFETY_FLAGS
from domain.sla import SlaTimer
from schemas.sla import Response
from schemas.triage import Route, TriageDecision
from sinks.base import BatchWrite, Stored

# sla_timers as the store reads and writes it: "name type" pairs, in one place.
_TIMER_FIELDS = (
    "call_id text, response text, requested_at timestamptz, warning_at timestamptz, breach_at timestamptz,"
    " partition integer, district text, warned boolean, breached boolean, dispatched_at timestamptz,"
    " arrived_at timestamptz, closed_at timestamptz, next_deadline_at timestamptz"
)
_TIMER_NAMES = [field.split()[0] for field in _TIMER_FIELDS.split(",")]
_TIMER_COLUMNS = ", ".join(_TIMER_NAMES)

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
        dispatched_at=row["dispatched_at"],
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

    async def _insert(self, sql: str, rows: list[dict[str, Any]], returning: bool = False) -> list[str]:
        """One statement for a whole batch: the rows travel as one JSON parameter.

        orjson encodes the batch in C and Postgres decodes it on its own core, which is far cheaper
        for this single-threaded worker than binding thousands of parameters.
        """
        payload = orjson.dumps(rows).decode()
        if returning:
            return [row[0] for row in await self.conn.fetch(sql, payload)]
        await self.conn.execute(sql, payload)
        return []

    async def write(self, batch: BatchWrite) -> Stored:
        if batch.calls:
            await self._insert(_INSERT_CALLS, [
                {"call_id": c.call_id, "event_id": c.event_id, "occurred_at": c.occurred_at,
                 "center_id": c.center_id, "nature_code": c.nature_code, "mpds_code": c.mpds_code,
                 "concerns": sorted(c.concerns), "safety_flags": [f for f in SAFETY_FLAGS if getattr(c, f)],
                 "person_in_crisis_is_caller": c.person_in_crisis_is_caller, "juvenile": c.juvenile,
                 "district": c.district, "caller_phone": c.caller_phone, "person_ref": ref}
                for c, ref in batch.calls
            ])
        decision_ids: list[str] = []
        if batch.decisions:
            decision_ids = await self._insert(_INSERT_DECISIONS, [
                {"event_id": d.event_id, "type": d.type, "call_id": d.call_id, "source_event_id": d.source_event_id,
                 "decided_at": d.decided_at, "route": d.route, "reasons": d.reasons, "policy_name": d.policy_name,
                 "policy_version": d.policy_version, "second_response_requested": d.second_response_requested,
                 "center_id": d.center_id, "district": d.district, "person_ref": d.person_ref,
                 "previous_route": d.previous_route, "overridden_by": d.overridden_by,
                 "override_reason": d.override_reason}
                for d in batch.decisions
            ], returning=True)
        if batch.lifecycle:
            await self._insert(_INSERT_CALL_EVENTS, [
                {"event_id": e.event_id, "call_id": e.call_id, "type": e.type, "occurred_at": e.occurred_at,
                 "unit_id": getattr(e, "unit_id", None), "unit_type": getattr(e, "unit_type", None),
                 "disposition": getattr(e, "disposition", None)}
                for e in batch.lifecycle
            ])
        if batch.timers:
            await self._insert(_UPSERT_TIMERS, [{**t._asdict(), "next_deadline_at": t.next_deadline}
                                                for t in batch.timers])
        sla_ids: list[str] = []
        if batch.sla_events:
            sla_ids = await self._insert(_INSERT_SLA_EVENTS, [
                {"event_id": e.event_id, "type": e.type, "call_id": e.call_id, "response": e.response,
                 "requested_at": e.requested_at, "deadline_at": e.deadline_at, "occurred_at": e.occurred_at,
                 "arrival_seconds": e.arrival_seconds, "district": e.district}
                for e in batch.sla_events
            ], returning=True)
        dead_ids: list[str] = []
        if batch.dead_letters:
            dead_ids = await self._insert(_INSERT_DEAD_LETTERS, [
                {"event_id": d.event_id, "source_topic": d.source_topic, "source_partition": d.source_partition,
                 "source_offset": d.source_offset, "source_key": d.source_key, "reason": d.reason,
                 "error": d.error, "original_value": base64.b64encode(original).decode(),
                 "dead_lettered_at": d.dead_lettered_at}
                for d, original in batch.dead_letters
            ], returning=True)
        return Stored(frozenset(decision_ids), frozenset(sla_ids), frozenset(dead_ids))


def _json_insert(table: str, columns: str, conflict: str, returning: str = "") -> str:
    """``INSERT ... SELECT FROM json_to_recordset($1)``: ``columns`` is "name type, ..." in table order."""
    pairs = [column.strip().split(" ", 1) for column in columns.split(",")]
    names = [name for name, _ in pairs]
    # bytea arrives base64-encoded: JSON has no bytes.
    select = ", ".join(f"decode({name}, 'base64')" if kind == "bytea" else name for name, kind in pairs)
    record = ", ".join(f"{name} {'text' if kind == 'bytea' else kind}" for name, kind in pairs)
    return (f"INSERT INTO {table} ({', '.join(names)}) SELECT {select}"
            f" FROM json_to_recordset($1::json) AS rows({record}) {conflict} {returning}").strip()


_INSERT_CALLS = _json_insert(
    "calls",
    "call_id text, event_id text, occurred_at timestamptz, center_id text, nature_code text, mpds_code text,"
    " concerns text[], safety_flags text[], person_in_crisis_is_caller boolean, juvenile boolean, district text,"
    " caller_phone text, person_ref text",
    "ON CONFLICT DO NOTHING",
)
_INSERT_DECISIONS = _json_insert(
    "triage_decisions",
    "event_id text, type text, call_id text, source_event_id text, decided_at timestamptz, route text,"
    " reasons text[], policy_name text, policy_version text, second_response_requested boolean, center_id text,"
    " district text, person_ref text, previous_route text, overridden_by text, override_reason text",
    "ON CONFLICT DO NOTHING", "RETURNING event_id",
)
_INSERT_CALL_EVENTS = _json_insert(
    "call_events",
    "event_id text, call_id text, type text, occurred_at timestamptz, unit_id text, unit_type text,"
    " disposition text",
    "ON CONFLICT DO NOTHING",
)
_UPSERT_TIMERS = _json_insert(
    "sla_timers",
    _TIMER_FIELDS,
    # The batch holds the row locked and its state is complete: a restarted timer (a new request
    # after an override) replaces every field, not only the flags.
    "ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in _TIMER_NAMES if name != "call_id")
    + ", updated_at = now()",
)
_INSERT_SLA_EVENTS = _json_insert(
    "sla_events",
    "event_id text, type text, call_id text, response text, requested_at timestamptz, deadline_at timestamptz,"
    " occurred_at timestamptz, arrival_seconds float8, district text",
    "ON CONFLICT DO NOTHING", "RETURNING event_id",
)
_INSERT_DEAD_LETTERS = _json_insert(
    "dead_letters",
    "event_id text, source_topic text, source_partition integer, source_offset bigint, source_key text,"
    " reason text, error text, original_value bytea, dead_lettered_at timestamptz",
    "ON CONFLICT DO NOTHING", "RETURNING event_id",
)


class PostgresStore:
    """A pool of connections, each prepared with its staging tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, database_url: str, max_size: int = 4) -> PostgresStore:
        return cls(await asyncpg.create_pool(database_url, min_size=1, max_size=max_size))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PostgresTransaction(conn)

    async def count_running_timers(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM sla_timers WHERE next_deadline_at IS NOT NULL"))

    async def close(self) -> None:
        await self.pool.close()
