"""Outcome facts kept in Postgres in the batch's own transaction, and the daily counts made from them
(all their SQL is here).

``PostgresTransaction.write`` collects the batch's events stored for the first time (``new_inputs``)
and ``PostgresStore.transaction`` calls ``record`` with them just before it commits. Only those
events change anything: a replayed event was not new, so it changes no fact. For the calls they
touch, in the batch's transaction:

1. ``outcome_calls``: the calls' facts, created if missing and locked, in call-id order, and
   updated to what the new events say (``domain.outcomes.apply_all``);
2. ``outcome_days``: the version of each center-day whose calls changed, bumped in key order.

Counts are not kept per event: ``outcome_daily`` is what ``domain.outcomes.day_counts`` makes of a
day's facts, and ``count_changed_days`` recounts each center-day whose version moved past the one
it was counted from (every worker, each feed round; ``agents.outcomes_feed``). Counting is a pure
function of facts, so a recount is always exact, and the per-event work is one facts row, not the
handful of count rows a call changes (which cost more than the rest of the outcome work together).

Locks: a batch locks facts by call id, then days (each sorted), so two workers never deadlock. A
recount locks its days first (``SKIP LOCKED``: a day a batch is bumping waits for the next round),
then reads the committed facts: a batch that changed a day's facts after that read bumps its version
after the recount commits, so the day is counted again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson

from domain.outcomes import (
    FACT_FIELDS,
    NO_OUTCOME_TYPES,
    CallFacts,
    OutcomeInput,
    apply_all,
    day_bounds,
    day_counts,
    facts_from_mapping,
)
from sinks.base import BatchWrite, StaleRead

if TYPE_CHECKING:
    from sinks.connection import Connection

__all__ = ["OutcomeInput", "count_all_changed_days", "count_days", "lock_uncounted_days", "new_inputs", "record"]

_COLUMN_TYPES = {
    "call_id": "text", "center_id": "text", "district": "text", "received_at": "timestamptz", "person_ref": "text",
    "behavioral_health": "boolean", "program_route": "text", "program_route_at": "timestamptz",
    "routed": "boolean", "current_route": "text", "current_at": "timestamptz",
    "team_requested_at": "timestamptz", "team_response": "text", "team_dispatched_at": "timestamptz",
    "team_arrived_at": "timestamptz", "field_unit_dispatched": "boolean", "field_unit_arrived": "boolean",
    "police_dispatched_at": "timestamptz", "closed_at": "timestamptz", "disposition": "text",
    "cad_unserved_reason": "text", "sla_outcome": "text", "sla_outcome_at": "timestamptz",
    "followup_contact_ended_at": "timestamptz", "followup_status": "text", "followup_ended_at": "timestamptz",
    "followup_days": "double precision", "followup_linkage": "text", "followup_attempts": "integer",
    "followup_reached": "boolean",
}
assert tuple(_COLUMN_TYPES) == FACT_FIELDS, "outcome_calls columns and CallFacts fields must match"
_FACT_COLUMNS = ", ".join(FACT_FIELDS)
_FACT_RECORD = ", ".join(f"{name} {kind}" for name, kind in _COLUMN_TYPES.items())

# The existing rows, locked in call-id order (two workers briefly sharing a partition never deadlock).
# Missing rows cannot be locked: new calls' facts are inserted with ON CONFLICT DO NOTHING, and a row
# another worker created meanwhile makes the batch read again (StaleRead), as for timers. One write per
# new call, where creating empty rows to lock them cost two.
_LOCK_FACTS = (
    f"SELECT {_FACT_COLUMNS} FROM outcome_calls WHERE call_id = ANY($1::text[]) ORDER BY call_id FOR UPDATE"
)
_INSERT_FACTS = (
    f"INSERT INTO outcome_calls ({_FACT_COLUMNS}) SELECT {_FACT_COLUMNS}"
    f" FROM json_to_recordset($1::json) AS rows({_FACT_RECORD}) ORDER BY call_id"
    " ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
)
_UPDATE_FACTS = (
    "UPDATE outcome_calls SET "
    + ", ".join(f"{name} = rows.{name}" for name in FACT_FIELDS if name != "call_id")
    + ", updated_at = now()"
    f" FROM json_to_recordset($1::json) AS rows({_FACT_RECORD}) WHERE outcome_calls.call_id = rows.call_id"
)
_BUMP_DAYS = (
    "INSERT INTO outcome_days (center_id, day) SELECT center_id, day FROM json_to_recordset($1::json)"
    " AS rows(center_id text, day date) ORDER BY center_id, day"
    " ON CONFLICT (center_id, day) DO UPDATE SET version = outcome_days.version + 1, changed_at = now()"
)


def new_inputs(batch: BatchWrite, new_calls: Collection[str], new_decisions: Collection[str],
               new_events: Collection[str], new_timer_events: Collection[str]) -> list[OutcomeInput]:
    """The batch's events stored for the first time, as the fold takes them.

    A rules decision counts only with its call's first ``call.received``: a call replayed under a new
    policy version gets a new decision row, but it is still the same call.
    """
    items: list[OutcomeInput] = [
        d for d in batch.decisions
        if d.event_id in new_decisions and (d.type == "triage.overridden" or d.call_id in new_calls)
    ]
    items += [e for e in batch.lifecycle if e.event_id in new_events]
    items += [e.event for e in batch.timer_events
              if e.event.event_id in new_timer_events and e.event.type not in NO_OUTCOME_TYPES]
    return items


def _fact_row(facts: CallFacts) -> dict[str, Any]:
    return facts.__dict__  # exactly FACT_FIELDS: read-only here, and orjson encodes it as it is


def changed_days(before: Mapping[str, CallFacts], after: Mapping[str, CallFacts],
                 zone: ZoneInfo) -> list[tuple[str, date]]:
    """The center-days (local to ``zone``) of calls whose facts changed and count (their call was received)."""
    days = set()
    for call_id, facts in after.items():
        if facts.received_at is not None and facts.center_id is not None and facts != before.get(call_id):
            days.add((facts.center_id, facts.received_at.astimezone(zone).date()))
    return sorted(days)


async def record(conn: Connection, items: Iterable[OutcomeInput], zone: ZoneInfo) -> int:
    """Apply new events to their calls' facts and bump their days' versions; returns center-days bumped."""
    items = list(items)
    if not items:
        return 0
    call_ids = sorted({item.call_id for item in items})
    before = {row["call_id"]: facts_from_mapping(dict(row)) for row in await conn.fetch(_LOCK_FACTS, call_ids)}
    after = apply_all(before, items)
    new = [facts for call_id, facts in after.items() if call_id not in before]
    changed = [facts for call_id, facts in after.items() if call_id in before and facts != before[call_id]]
    if new:
        inserted = await conn.fetch(_INSERT_FACTS, orjson.dumps([_fact_row(f) for f in new]).decode())
        if len(inserted) != len(new):
            raise StaleRead(f"{len(new) - len(inserted)} call(s)' outcome facts were created meanwhile by another "
                            "worker (a rebalance): the batch is read again")
    if changed:
        await conn.execute(_UPDATE_FACTS, orjson.dumps([_fact_row(f) for f in changed]).decode())
    days = changed_days(before, after, zone)
    if days:
        await conn.execute(_BUMP_DAYS, orjson.dumps([{"center_id": c, "day": d} for c, d in days]).decode())
    return len(days)


# -- counting: outcome_daily made from the facts of each changed center-day -------------------------

# Oldest day first across centers (the closed ones); SKIP LOCKED never waits, so this order and the
# batches' (center, day) order cannot deadlock.
_LOCK_UNCOUNTED = (
    "SELECT center_id, day FROM outcome_days WHERE version > counted_version"
    " AND ($2::date IS NULL OR day <= $2::date) ORDER BY day, center_id LIMIT $1 FOR UPDATE SKIP LOCKED"
)
# A day's calls: those received within its local bounds (the (center_id, received_at) index).
_DAY_FACTS = (
    "SELECT " + ", ".join(f"o.{name}" for name in FACT_FIELDS)
    + " FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS d(center_id, lo, hi)"
    " JOIN outcome_calls o ON o.center_id = d.center_id AND o.received_at >= d.lo AND o.received_at < d.hi"
)
_DAY_ROWS = (
    "SELECT o.center_id, o.day, o.hour, o.district, o.route, o.measure, o.n"
    " FROM unnest($1::text[], $2::date[]) AS d(center_id, day)"
    " JOIN outcome_daily o ON o.center_id = d.center_id AND o.day = d.day"
)
# The worker never deletes (migration 005): a count that fell to nothing is kept as a zero.
_SET_DAILY = (
    "INSERT INTO outcome_daily (center_id, day, hour, district, route, measure, n)"
    " SELECT center_id, day, hour, district, route, measure, n FROM json_to_recordset($1::json)"
    " AS rows(center_id text, day date, hour smallint, district text, route text, measure text, n bigint)"
    " ON CONFLICT (center_id, day, hour, district, route, measure)"
    " DO UPDATE SET n = EXCLUDED.n, updated_at = now()"
)
_MARK_COUNTED = (
    "UPDATE outcome_days d SET counted_version = d.version, counted_at = now()"
    " FROM unnest($1::text[], $2::date[]) AS c(center_id, day) WHERE d.center_id = c.center_id AND d.day = c.day"
)


async def lock_uncounted_days(conn: Connection, limit: int, last_day: date | None) -> list[tuple[str, date]]:
    """Up to ``limit`` center-days (up to ``last_day`` when given) whose facts changed since they were
    counted, oldest first, locked until the caller's transaction ends; days another worker or a batch
    holds are skipped."""
    return [(row["center_id"], row["day"]) for row in await conn.fetch(_LOCK_UNCOUNTED, limit, last_day)]


async def count_days(conn: Connection, zone: ZoneInfo, days: Sequence[tuple[str, date]]) -> None:
    """Recount these center-days (locked by ``lock_uncounted_days`` in the caller's transaction) from
    their calls' facts, writing only the counts that changed, and mark them counted."""
    if not days:
        return
    bounds = [day_bounds(day, zone) for _, day in days]
    facts = [facts_from_mapping(dict(row)) for row in await conn.fetch(
        _DAY_FACTS, [c for c, _ in days], [lo for lo, _ in bounds], [hi for _, hi in bounds])]
    counts = day_counts(facts, zone)
    centers, dates = [c for c, _ in days], [d for _, d in days]
    stored = {(row["center_id"], row["day"], row["hour"], row["district"], row["route"], row["measure"]): row["n"]
              for row in await conn.fetch(_DAY_ROWS, centers, dates)}
    rows = [{"center_id": c, "day": d, "hour": h, "district": district, "route": r, "measure": m, "n": n}
            for (c, d, h, district, r, m), n in sorted(
                {**dict.fromkeys(stored, 0), **counts}.items()) if stored.get((c, d, h, district, r, m)) != n]
    if rows:
        await conn.execute(_SET_DAILY, orjson.dumps(rows).decode())
    await conn.execute(_MARK_COUNTED, centers, dates)


async def count_all_changed_days(pool: asyncpg.Pool, zone: ZoneInfo, limit: int = 5) -> int:
    """Recount every changed center-day now, open days included, ``limit`` per transaction; returns how
    many (tests and diagnostics: the workers count closed days only, ``agents.outcomes_feed``)."""
    counted = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            days = await lock_uncounted_days(conn, limit, None)
            await count_days(conn, zone, days)
        counted += len(days)
        if len(days) < limit:
            return counted
