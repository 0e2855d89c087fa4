"""The read side: every query the demo, the benchmark and the reports run against Postgres.

SQL lives in ``sinks/`` only, reads too: callers get plain Python values. Each function opens its
own short connection (these run a few times per command, never per event).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg

# The deadline events each timer kind emits when a deadline passes (their occurred_at is the deadline).
DEADLINE_EVENT_TYPES = ("sla.warning", "sla.breached", "followup.overdue", "followup.expired")


@contextlib.asynccontextmanager
async def connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


def _like(call_prefix: str) -> str:
    return call_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def pipeline_counts(database_url: str, call_prefix: str, deadletter_topic: str) -> dict[str, Any]:
    """What the pipeline stored for one run (calls whose id starts with ``call_prefix``)."""
    like = _like(call_prefix)
    async with connection(database_url) as conn:
        routes = await conn.fetch(
            "SELECT route, count(*) AS n FROM triage_decisions WHERE call_id LIKE $1 AND type = 'triage.decided'"
            " GROUP BY route ORDER BY route", like)
        timer_events = await conn.fetch(
            "SELECT kind, type, count(*) AS n FROM timer_events WHERE call_id LIKE $1 GROUP BY kind, type"
            " ORDER BY kind, type", like)
        running = await conn.fetch(
            "SELECT kind, count(*) AS n FROM timers WHERE call_id LIKE $1 AND next_deadline_at IS NOT NULL"
            " GROUP BY kind", like)
        running_by_kind = {row["kind"]: row["n"] for row in running}
        return {
            "calls_stored": await conn.fetchval("SELECT count(*) FROM calls WHERE call_id LIKE $1", like),
            "decisions_stored": await conn.fetchval(
                "SELECT count(*) FROM triage_decisions WHERE call_id LIKE $1 AND type = 'triage.decided'", like),
            "lifecycle_events_stored": await conn.fetchval(
                "SELECT count(*) FROM call_events WHERE call_id LIKE $1", like),
            "dead_lettered": await conn.fetchval(
                "SELECT count(*) FROM dead_letters WHERE source_topic = $1", deadletter_topic),
            "by_route": {row["route"]: row["n"] for row in routes},
            "sla_events": {row["type"]: row["n"] for row in timer_events if row["kind"] == "sla_arrival"},
            "followup_events": {row["type"]: row["n"] for row in timer_events if row["kind"] == "followup"},
            "sla_timers_running": running_by_kind.get("sla_arrival", 0),
            "followups_open": running_by_kind.get("followup", 0),
        }


async def decision_stats(database_url: str, call_prefix: str) -> dict[str, Any]:
    """Decisions of these calls: how many, the first and last ``stored_at``, the size of the last batch."""
    async with connection(database_url) as conn:
        row = await conn.fetchrow(
            "WITH d AS (SELECT stored_at FROM triage_decisions WHERE call_id LIKE $1 AND type = 'triage.decided')"
            " SELECT count(*) AS n, min(stored_at) AS first, max(stored_at) AS last,"
            " count(*) FILTER (WHERE stored_at = (SELECT max(stored_at) FROM d)) AS last_batch,"
            " count(DISTINCT stored_at) AS batches FROM d",
            _like(call_prefix))
        assert row is not None  # an aggregate always returns a row
        return dict(row)


async def _quantiles(database_url: str, seconds: str, table: str, where: str, call_prefix: str) -> dict[str, Any]:
    """p50 and p99 (``q``), count (``n``) and max of the ``seconds`` expression over matching rows."""
    async with connection(database_url) as conn:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY s) AS q, max(s) AS max"
            f" FROM (SELECT extract(epoch FROM {seconds})::float8 AS s FROM {table}"
            f"       WHERE call_id LIKE $1 AND {where}) AS measured",
            _like(call_prefix))
        assert row is not None  # an aggregate always returns a row
        return dict(row)


async def decision_latency_quantiles(database_url: str, call_prefix: str) -> dict[str, Any]:
    """Seconds from a call's occurred_at (``decided_at``) to its decision's transaction (``stored_at``)."""
    return await _quantiles(database_url, "stored_at - decided_at", "triage_decisions",
                            "type = 'triage.decided'", call_prefix)


async def timer_lag_quantiles(database_url: str, call_prefix: str) -> dict[str, Any]:
    """Seconds from each deadline to the transaction that stored its event, every kind together."""
    types = ", ".join(f"'{kind}'" for kind in DEADLINE_EVENT_TYPES)
    return await _quantiles(database_url, "stored_at - occurred_at", "timer_events", f"type IN ({types})",
                            call_prefix)


async def stored_events(database_url: str, call_prefix: str) -> int:
    """Calls plus lifecycle events stored for these calls."""
    like = _like(call_prefix)
    async with connection(database_url) as conn:
        return int(await conn.fetchval(
            "SELECT (SELECT count(*) FROM calls WHERE call_id LIKE $1)"
            " + (SELECT count(*) FROM call_events WHERE call_id LIKE $1)", like))


async def followups(database_url: str, call_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The current follow-up of each of these calls (the ``followups`` view: status, attempts, linkage)."""
    async with connection(database_url) as conn:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (call_id) call_id, contact, contact_ended_at, status, attempts_made, reached_at,"
            " ended_at, linkage, person_ref, district, next_deadline_at, failed_reason FROM followups"
            " WHERE call_id = ANY($1::text[]) ORDER BY call_id, seq DESC", call_ids)
        return {row["call_id"]: dict(row) for row in rows}


async def dead_letters(database_url: str, source_topic: str) -> list[dict[str, Any]]:
    """Every dead letter of records read from ``source_topic``: where from, why, and the original bytes."""
    async with connection(database_url) as conn:
        rows = await conn.fetch(
            "SELECT source_partition, source_offset, source_key, reason, error, original_value, original_key"
            " FROM dead_letters WHERE source_topic = $1 ORDER BY source_partition, source_offset", source_topic)
        return [dict(row) for row in rows]


async def stored_call_ids(database_url: str, call_ids: list[str]) -> set[str]:
    """Which of these calls are stored (with their decision)."""
    async with connection(database_url) as conn:
        rows = await conn.fetch(
            "SELECT c.call_id FROM calls c JOIN triage_decisions d ON d.call_id = c.call_id"
            " WHERE c.call_id = ANY($1::text[])", call_ids)
        return {row["call_id"] for row in rows}


async def timer_events_of(database_url: str, call_ids: list[str]) -> list[tuple[str, str]]:
    """(call id, event type) of every timer event of these calls, sorted."""
    async with connection(database_url) as conn:
        rows = await conn.fetch(
            "SELECT call_id, type FROM timer_events WHERE call_id = ANY($1::text[]) ORDER BY call_id, type", call_ids)
        return [(row["call_id"], row["type"]) for row in rows]


async def timer_event_ids_until(database_url: str, horizon: datetime) -> set[str]:
    """Ids of every timer event (all kinds) whose event time is at or before ``horizon``."""
    async with connection(database_url) as conn:
        rows = await conn.fetch("SELECT event_id FROM timer_events WHERE occurred_at <= $1", horizon)
        return {row["event_id"] for row in rows}


async def timer_event_counts(database_url: str) -> dict[str, int]:
    """Timer events by type."""
    async with connection(database_url) as conn:
        return {row["type"]: int(row["n"]) for row in
                await conn.fetch("SELECT type, count(*) AS n FROM timer_events GROUP BY type")}
