"""Reads the fault-injection suite checks a run with: everything stored, record by record.

Plain Python values out (ids, tuples, dicts), so the checker (``crisis.chaos.checker``) compares
them with the expected outcome without any SQL of its own. Each function opens one short
connection: these run a few times per run, never per event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sinks.queries import connection

TimerKey = tuple[str, str, int]


@dataclass(frozen=True)
class StoredDecision:
    event_id: str
    call_id: str
    type: str
    decided_at: datetime
    route: str
    source_event_id: str


@dataclass
class StoredState:
    """Everything a run stored, keyed the way the expected outcome is."""

    calls: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # call_id -> (event_id, person_ref)
    decisions: list[StoredDecision] = field(default_factory=list)
    current: dict[str, list[str]] = field(default_factory=dict)  # call_id -> decisions at its latest decided_at
    lifecycle: list[str] = field(default_factory=list)  # event ids
    timer_events: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # id -> (kind, type, call_id)
    timers: dict[TimerKey, tuple[dict[str, Any], datetime | None, str | None]] = field(default_factory=dict)
    dead_letters: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # id -> (partition, offset, reason)
    dead_letter_texts: list[tuple[str, str, str | None]] = field(default_factory=list)  # (reason, error, key)


async def stored_state(database_url: str) -> StoredState:
    """Every row the pipeline wrote (one database per run: no filter needed)."""
    state = StoredState()
    async with connection(database_url) as conn:
        for row in await conn.fetch("SELECT call_id, event_id, person_ref FROM calls"):
            state.calls[row["call_id"]] = (row["event_id"], row["person_ref"])
        for row in await conn.fetch(
                "SELECT event_id, call_id, type, decided_at, route, source_event_id FROM triage_decisions"):
            state.decisions.append(StoredDecision(row["event_id"], row["call_id"], row["type"], row["decided_at"],
                                                  row["route"], row["source_event_id"]))
        # Ties at the latest decided_at would make "the current decision" ambiguous: keep them all.
        for row in await conn.fetch(
                "SELECT call_id, array_agg(event_id ORDER BY event_id) AS ids FROM triage_decisions d"
                " WHERE decided_at = (SELECT max(decided_at) FROM triage_decisions WHERE call_id = d.call_id)"
                " GROUP BY call_id"):
            state.current[row["call_id"]] = list(row["ids"])
        state.lifecycle = [row["event_id"] for row in await conn.fetch("SELECT event_id FROM call_events")]
        for row in await conn.fetch("SELECT event_id, kind, type, call_id FROM timer_events"):
            state.timer_events[row["event_id"]] = (row["kind"], row["type"], row["call_id"])
        for row in await conn.fetch(
                "SELECT kind, call_id, seq, state::text AS state, next_deadline_at, failed_reason FROM timers"):
            state.timers[(row["kind"], row["call_id"], row["seq"])] = (
                json.loads(row["state"]), row["next_deadline_at"], row["failed_reason"])
        for row in await conn.fetch(
                "SELECT event_id, source_partition, source_offset, reason, error, source_key FROM dead_letters"):
            state.dead_letters[row["event_id"]] = (row["source_partition"], row["source_offset"], row["reason"])
            state.dead_letter_texts.append((row["reason"], row["error"], row["source_key"]))
    return state


async def accounted_records(database_url: str) -> int:
    """Inbound records accounted for so far: calls, lifecycle events, overrides and dead letters stored."""
    async with connection(database_url) as conn:
        return int(await conn.fetchval(
            "SELECT (SELECT count(*) FROM calls) + (SELECT count(*) FROM call_events)"
            " + (SELECT count(*) FROM triage_decisions WHERE type = 'triage.overridden')"
            " + (SELECT count(*) FROM dead_letters)"))


async def readable_views(database_url: str, role: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every view ``role`` may read: what reports and partners can see, to search it."""
    async with connection(database_url) as conn:
        names = [row["name"] for row in await conn.fetch(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name FROM information_schema.views"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND has_table_privilege($1, quote_ident(table_schema) || '.' || quote_ident(table_name), 'SELECT')"
            " ORDER BY 1", role)]
        views: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            # The names come from the catalog, quoted by quote_ident: not user input.
            views[name] = [dict(row) for row in await conn.fetch(f"SELECT * FROM {name}")]
        return views
