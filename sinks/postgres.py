"""The Postgres store: one transaction per batch, one idempotent statement per table.

Per batch the cost is a handful of round trips whatever the batch size: each table gets one
``INSERT ... SELECT FROM json_to_recordset($1) ON CONFLICT ...`` (a prepared statement, no
staging table), returning the ids stored for the first time.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson

from domain.policy import SAFETY_FLAGS, load_policy
from schemas.triage import Route, TriageDecision
from sinks import aggregates
from sinks.base import BatchWrite, StaleRead, Stored, TimerRow

if TYPE_CHECKING:
    from sinks.connection import Connection

_TIMER_COLUMNS = ("kind, call_id, seq, partition, state, next_deadline_at, failed_reason, applied_event_ids,"
                  " applied_through_offset")


def _timer_from_row(row: asyncpg.Record) -> TimerRow:
    return TimerRow(row["kind"], row["call_id"], row["seq"], row["partition"], orjson.loads(row["state"]),
                    row["next_deadline_at"], stored=True, failed_reason=row["failed_reason"],
                    applied_event_ids=tuple(orjson.loads(row["applied_event_ids"])),
                    applied_through_offset=row["applied_through_offset"])


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
        safety_flags=tuple(row["safety_flags"]),
        previous_route=Route(row["previous_route"]) if row["previous_route"] else None,
        overridden_by=row["overridden_by"],
        approved_by=row["approved_by"],
        approved_by_role=row["approved_by_role"],
        override_reason=row["override_reason"],
    )




class PostgresTransaction:
    """One batch's reads and writes on one connection inside one transaction."""

    def __init__(self, conn: Connection, zone: ZoneInfo) -> None:
        self.conn = conn
        self.zone = zone  # outcome aggregates count by day and hour in the policy's time zone
        self.outcome_inputs: list[aggregates.OutcomeInput] = []  # events stored for the first time
        self.finished = False

    async def lock_timers(self, call_ids: Sequence[str]) -> list[TimerRow]:
        if not call_ids:
            return []
        # Ordered locking: two workers briefly sharing a partition during a rebalance never deadlock.
        rows = await self.conn.fetch(
            f"SELECT {_TIMER_COLUMNS} FROM timers WHERE call_id = ANY($1::text[])"
            " ORDER BY call_id, kind, seq FOR UPDATE",
            list(set(call_ids)),
        )
        return [_timer_from_row(row) for row in rows]

    async def latest_decisions(self, call_ids: Sequence[str]) -> dict[str, TriageDecision]:
        if not call_ids:
            return {}
        rows = await self.conn.fetch(
            "SELECT DISTINCT ON (call_id) * FROM triage_decisions WHERE call_id = ANY($1::text[])"
            " ORDER BY call_id, decided_at DESC, stored_at DESC",
            list(set(call_ids)),
        )
        return {row["call_id"]: _decision_from_row(row) for row in rows}

    async def due_timers(self, before: datetime, partitions: Collection[int] | None, limit: int) -> list[TimerRow]:
        if partitions is not None and not partitions:
            return []
        rows = await self.conn.fetch(
            f"SELECT {_TIMER_COLUMNS} FROM timers"
            " WHERE next_deadline_at IS NOT NULL AND next_deadline_at < $1"
            " AND ($2::integer[] IS NULL OR partition = ANY($2::integer[]))"
            " ORDER BY next_deadline_at LIMIT $3 FOR UPDATE SKIP LOCKED",
            before,
            sorted(partitions) if partitions is not None else None,
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
        if self.finished:
            raise RuntimeError("write after finish: its events would miss the outcome facts")
        call_ids: list[str] = []
        if batch.calls:
            call_ids = await self._insert(_INSERT_CALLS, [
                {"call_id": c.call_id, "event_id": c.event_id, "occurred_at": c.occurred_at,
                 "center_id": c.center_id, "nature_code": c.nature_code, "mpds_code": c.mpds_code,
                 "concerns": sorted(c.concerns), "safety_flags": [f for f in SAFETY_FLAGS if getattr(c, f)],
                 "person_in_crisis_is_caller": c.person_in_crisis_is_caller, "juvenile": c.juvenile,
                 "district": c.district, "caller_phone": c.caller_phone, "person_ref": ref}
                for c, ref in batch.calls
            ], returning=True)
        decision_ids: list[str] = []
        if batch.decisions:
            decision_ids = await self._insert(_INSERT_DECISIONS, [
                {"event_id": d.event_id, "type": d.type, "call_id": d.call_id, "source_event_id": d.source_event_id,
                 "decided_at": d.decided_at, "route": d.route, "reasons": d.reasons, "policy_name": d.policy_name,
                 "policy_version": d.policy_version, "second_response_requested": d.second_response_requested,
                 "center_id": d.center_id, "district": d.district, "person_ref": d.person_ref,
                 "safety_flags": d.safety_flags, "previous_route": d.previous_route, "overridden_by": d.overridden_by,
                 "approved_by": d.approved_by, "approved_by_role": d.approved_by_role,
                 "override_reason": d.override_reason}
                for d in batch.decisions
            ], returning=True)
        event_ids: list[str] = []
        if batch.lifecycle:
            event_ids = await self._insert(_INSERT_CALL_EVENTS, [
                {"event_id": e.event_id, "call_id": e.call_id, "type": e.type, "occurred_at": e.occurred_at,
                 # __dict__: a field the event type lacks is None (getattr would raise and catch, per field)
                 **{name: e.__dict__.get(name) for name in _LIFECYCLE_DETAILS}}
                for e in batch.lifecycle
            ], returning=True)
        if batch.timers:
            await self._write_timers(batch.timers)
        timer_event_ids: list[str] = []
        if batch.timer_events:
            timer_event_ids = await self._insert(_INSERT_TIMER_EVENTS, [
                {"event_id": e.event.event_id, "kind": e.kind, "type": e.event.type, "call_id": e.event.call_id,
                 "occurred_at": e.event.occurred_at, "payload": orjson.Fragment(e.payload)}
                for e in batch.timer_events
            ], returning=True)
        dead_ids: list[str] = []
        if batch.dead_letters:
            dead_ids = await self._insert(_INSERT_DEAD_LETTERS, [
                {"event_id": r.letter.event_id, "source_topic": r.letter.source_topic,
                 "source_partition": r.letter.source_partition, "source_offset": r.letter.source_offset,
                 "source_key": r.letter.source_key, "reason": r.letter.reason, "error": r.letter.error,
                 "stage": r.letter.stage, "exception": r.letter.exception,
                 "original_value": base64.b64encode(r.original_value).decode(),
                 "original_key": base64.b64encode(r.original_key).decode() if r.original_key is not None else None,
                 "dead_lettered_at": r.letter.dead_lettered_at}
                for r in batch.dead_letters
            ], returning=True)
        self.outcome_inputs += aggregates.new_inputs(batch, set(call_ids), set(decision_ids), set(event_ids),
                                                     set(timer_event_ids))
        return Stored(frozenset(decision_ids), frozenset(timer_event_ids), frozenset(dead_ids))

    async def finish(self) -> None:
        if not self.finished:
            self.finished = True
            await aggregates.record(self.conn, self.outcome_inputs, self.zone)

    async def _write_timers(self, rows: Sequence[TimerRow]) -> None:
        """Update the rows this batch locked; insert the new ones, and refuse to overwrite a row
        another worker created after this batch found none (``StaleRead``: retry the batch)."""
        new = [_timer_fields(row) for row in rows if not row.stored]
        known = [_timer_fields(row) for row in rows if row.stored]
        if new:
            inserted = await self._insert(_INSERT_TIMERS, new, returning=True)
            if len(inserted) != len(new):
                raise StaleRead(f"{len(new) - len(inserted)} new timer(s) were created meanwhile by another "
                                     "worker (a rebalance): the batch is read again")
        if known:
            await self._insert(_UPDATE_TIMERS, known)


def _timer_fields(row: TimerRow) -> dict[str, Any]:
    return {"kind": row.kind, "call_id": row.call_id, "seq": row.seq, "partition": row.partition,
            "state": row.state, "next_deadline_at": row.next_deadline_at, "failed_reason": row.failed_reason,
            "applied_event_ids": row.applied_event_ids, "applied_through_offset": row.applied_through_offset}


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
    "ON CONFLICT DO NOTHING", "RETURNING call_id",
)
_INSERT_DECISIONS = _json_insert(
    "triage_decisions",
    "event_id text, type text, call_id text, source_event_id text, decided_at timestamptz, route text,"
    " reasons text[], policy_name text, policy_version text, second_response_requested boolean, center_id text,"
    " district text, person_ref text, safety_flags text[], previous_route text, overridden_by text,"
    " approved_by text, approved_by_role text, override_reason text",
    "ON CONFLICT DO NOTHING", "RETURNING event_id",
)
# The fields of lifecycle events beyond the common four, each a column of call_events.
_LIFECYCLE_DETAILS = ("unit_id", "unit_type", "disposition", "attempt_result", "attempted_by", "channel", "linkage",
                      "completed_by", "unserved_reason")
_INSERT_CALL_EVENTS = _json_insert(
    "call_events",
    "event_id text, call_id text, type text, occurred_at timestamptz, "
    + ", ".join(f"{name} text" for name in _LIFECYCLE_DETAILS),
    "ON CONFLICT DO NOTHING", "RETURNING event_id",
)
_TIMER_RECORD = ("kind text, call_id text, seq integer, partition integer, state json,"
                 " next_deadline_at timestamptz, failed_reason text, applied_event_ids json,"
                 " applied_through_offset bigint")
_INSERT_TIMERS = _json_insert("timers", _TIMER_RECORD, "ON CONFLICT DO NOTHING", "RETURNING call_id")
# Rows the batch holds locked, its state complete: every field is replaced (an upsert finds each row
# by its key directly; an UPDATE ... FROM join costs half as much again).
_UPDATE_TIMERS = _json_insert(
    "timers", _TIMER_RECORD,
    "ON CONFLICT (call_id, kind, seq) DO UPDATE SET partition = EXCLUDED.partition, state = EXCLUDED.state,"
    " next_deadline_at = EXCLUDED.next_deadline_at, failed_reason = EXCLUDED.failed_reason,"
    " applied_event_ids = EXCLUDED.applied_event_ids, applied_through_offset = EXCLUDED.applied_through_offset,"
    " updated_at = now()",
)
_INSERT_TIMER_EVENTS = _json_insert(
    "timer_events",
    "event_id text, kind text, type text, call_id text, occurred_at timestamptz, payload json",
    "ON CONFLICT DO NOTHING", "RETURNING event_id",
)
_INSERT_DEAD_LETTERS = _json_insert(
    "dead_letters",
    "event_id text, source_topic text, source_partition integer, source_offset bigint, source_key text,"
    " reason text, error text, stage text, exception text, original_value bytea, original_key bytea,"
    " dead_lettered_at timestamptz",
    "ON CONFLICT DO NOTHING", "RETURNING event_id",
)


class PostgresStore:
    """A pool of connections, each prepared with its staging tables."""

    def __init__(self, pool: asyncpg.Pool, zone: ZoneInfo | None = None) -> None:
        self.pool = pool
        # The time zone outcome aggregates bucket days and hours in: the policy's (the default one when not given).
        self.zone = zone or load_policy().zone

    @classmethod
    async def connect(cls, database_url: str, max_size: int = 4, zone: ZoneInfo | None = None) -> PostgresStore:
        return cls(await asyncpg.create_pool(database_url, min_size=1, max_size=max_size), zone)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self.pool.acquire() as conn, conn.transaction():
            tx = PostgresTransaction(conn, self.zone)
            yield tx
            # Outcome aggregates last, just before the commit: every worker updates today's count rows, so
            # they are locked only for that moment, after all of the batch's own rows. The pipeline calls it
            # while its messages are being acknowledged; that wait is usually the shorter of the two.
            await tx.finish()

    async def ping(self) -> None:
        """Raise unless Postgres answers (readiness)."""
        await self.pool.fetchval("SELECT 1")

    async def count_running_timers(self) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT kind, count(*) AS n FROM timers WHERE next_deadline_at IS NOT NULL GROUP BY kind")
        return {row["kind"]: int(row["n"]) for row in rows}

    async def close(self) -> None:
        await self.pool.close()
