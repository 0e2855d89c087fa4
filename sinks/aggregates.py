"""Outcome aggregates kept in Postgres in the batch's own transaction (all their SQL is here).

``PostgresTransaction.write`` collects the batch's events stored for the first time (``new_inputs``)
and ``PostgresStore.transaction`` calls ``record`` with them just before it commits. Only those
events change anything: a replayed event was not new, so it changes no fact and no count. For the
calls they touch, in the batch's transaction:

1. ``outcome_calls``: the calls' facts, created if missing and locked, in call-id order;
2. the facts after the new events, and the difference of what they count (``domain.outcomes``);
3. ``outcome_daily``: that difference added, rows locked in key order;
4. ``outcome_days``: each changed center-day's version bumped, in key order (the feed's signal).

Every worker takes its locks in that order (facts by call id, then daily rows, then days, each
sorted), after the batch's own rows; so two workers updating the same day wait for each other but
never deadlock, and neither loses the other's increment (``n = n + delta`` under the row lock).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from domain.outcomes import (
    FACT_FIELDS,
    NO_OUTCOME_TYPES,
    CallFacts,
    Key,
    OutcomeInput,
    apply_all,
    deltas,
    facts_from_mapping,
)
from sinks.base import BatchWrite, StaleRead

if TYPE_CHECKING:
    from sinks.connection import Connection

__all__ = ["OutcomeInput", "new_inputs", "record"]

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
_ADD_DAILY = (
    "INSERT INTO outcome_daily (center_id, day, hour, district, route, measure, n)"
    " SELECT center_id, day, hour, district, route, measure, n FROM json_to_recordset($1::json)"
    " AS rows(center_id text, day date, hour smallint, district text, route text, measure text, n bigint)"
    " ORDER BY center_id, day, hour, district, route, measure"
    " ON CONFLICT (center_id, day, hour, district, route, measure)"
    " DO UPDATE SET n = outcome_daily.n + EXCLUDED.n, updated_at = now()"
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


def daily_rows(change: Counter[Key]) -> list[dict[str, Any]]:
    """The aggregate increments as rows, in lock order."""
    return [{"center_id": c, "day": d, "hour": h, "district": district, "route": r, "measure": m, "n": n}
            for (c, d, h, district, r, m), n in sorted(change.items())]


def _fact_row(facts: CallFacts) -> dict[str, Any]:
    return facts.__dict__  # exactly FACT_FIELDS: read-only here, and orjson encodes it as it is


async def record(conn: Connection, items: Iterable[OutcomeInput], zone: ZoneInfo) -> int:
    """Apply new events to their calls' facts and the daily aggregates; returns aggregate rows changed."""
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
    change = deltas(before, after, zone)
    if not change:
        return 0
    await conn.execute(_ADD_DAILY, orjson.dumps(daily_rows(change)).decode())
    days = sorted({(center, day) for center, day, *_ in change})
    await conn.execute(_BUMP_DAYS, orjson.dumps([{"center_id": c, "day": d} for c, d in days]).decode())
    return len(change)

