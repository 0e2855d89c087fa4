"""The outcomes feed's SQL: which closed days changed, their counts, and the outbox of revisions.

Two short transactions per round (``agents.outcomes_feed``):

1. ``changed_days`` locks the center-days whose aggregates moved since their last record
   (``FOR UPDATE SKIP LOCKED``: a day another worker is handling, or a batch is updating, waits for
   the next round), the caller stores a new revision for each closed one whose counts differ, and
   ``mark_fed`` remembers the version it was made from;
2. ``unpublished`` locks stored records not yet published, the caller publishes them, and
   ``mark_published`` marks them; a crash in between re-sends identical records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

if TYPE_CHECKING:
    from sinks.connection import Connection


async def changed_days(conn: Connection, limit: int, last_day: date | None) -> list[asyncpg.Record]:
    """Center-days up to ``last_day`` (all when ``None``) whose aggregates changed since their last record,
    locked (others' skipped). Today's row, which every batch bumps, is left alone when ``last_day`` says so."""
    return list(await conn.fetch(
        "SELECT center_id, day, version FROM outcome_days WHERE version > fed_version"
        " AND ($2::date IS NULL OR day <= $2::date)"
        " ORDER BY center_id, day LIMIT $1 FOR UPDATE SKIP LOCKED", limit, last_day))


async def center_clocks(conn: Connection, centers: Sequence[str]) -> dict[str, datetime]:
    """Each center's event time: the newest call stored for it."""
    rows = await conn.fetch(
        "SELECT c.center_id, (SELECT max(received_at) FROM outcome_calls o WHERE o.center_id = c.center_id) AS t"
        " FROM unnest($1::text[]) AS c(center_id)", list(centers))
    return {row["center_id"]: row["t"] for row in rows if row["t"] is not None}


async def day_counts(conn: Connection, days: Sequence[tuple[str, date]]) -> dict[tuple[str, date],
                                                                                         dict[str, int]]:
    """Each center-day's counts over all hours, districts and routes."""
    rows = await conn.fetch(
        "SELECT d.center_id, d.day, o.measure, sum(o.n)::bigint AS n"
        " FROM unnest($1::text[], $2::date[]) AS d(center_id, day)"
        " JOIN outcome_daily o ON o.center_id = d.center_id AND o.day = d.day"
        " GROUP BY 1, 2, 3", [c for c, _ in days], [d for _, d in days])
    counts: dict[tuple[str, date], dict[str, int]] = defaultdict(dict)
    for row in rows:
        counts[(row["center_id"], row["day"])][row["measure"]] = int(row["n"])
    return dict(counts)


async def last_records(conn: Connection, days: Sequence[tuple[str, date]]
                       ) -> dict[tuple[str, date], tuple[int, str]]:
    """Each center-day's latest revision and its content hash."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (f.center_id, f.day) f.center_id, f.day, f.revision, f.content_hash"
        " FROM unnest($1::text[], $2::date[]) AS d(center_id, day)"
        " JOIN outcome_feed f ON f.center_id = d.center_id AND f.day = d.day"
        " ORDER BY f.center_id, f.day, f.revision DESC", [c for c, _ in days], [d for _, d in days])
    return {(row["center_id"], row["day"]): (row["revision"], row["content_hash"]) for row in rows}


async def add_records(conn: Connection, records: Sequence[dict[str, Any]]) -> None:
    """Store revisions (center_id, day, revision, event_id, payload, content_hash) in the outbox."""
    if records:
        await conn.execute(
            "INSERT INTO outcome_feed (center_id, day, revision, event_id, payload, content_hash)"
            " SELECT center_id, day, revision, event_id, payload, content_hash FROM json_to_recordset($1::json)"
            " AS r(center_id text, day date, revision integer, event_id text, payload jsonb, content_hash text)",
            orjson.dumps(list(records)).decode())


async def mark_fed(conn: Connection, days: Sequence[tuple[str, date, int]]) -> None:
    """Remember the aggregate version each day's latest record reflects."""
    if days:
        await conn.execute(
            "UPDATE outcome_days d SET fed_version = GREATEST(d.fed_version, v.version)"
            " FROM unnest($1::text[], $2::date[], $3::bigint[]) AS v(center_id, day, version)"
            " WHERE d.center_id = v.center_id AND d.day = v.day",
            [c for c, _, _ in days], [d for _, d, _ in days], [v for _, _, v in days])


async def unpublished(conn: Connection, limit: int) -> list[asyncpg.Record]:
    """Stored records not yet published, oldest revision first, locked (others' skipped)."""
    return list(await conn.fetch(
        "SELECT center_id, day, revision, event_id, payload::text AS payload, created_at FROM outcome_feed"
        " WHERE published_at IS NULL ORDER BY center_id, day, revision LIMIT $1 FOR UPDATE SKIP LOCKED", limit))


async def mark_published(conn: Connection, event_ids: Sequence[str]) -> None:
    await conn.execute("UPDATE outcome_feed SET published_at = now() WHERE event_id = ANY($1::text[])",
                       list(event_ids))


async def count_unpublished(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM outcome_feed WHERE published_at IS NULL"))


async def feed_records(database_url: str) -> list[dict[str, Any]]:
    """Every stored record, oldest first (tests and diagnostics)."""
    from sinks.queries import connection

    async with connection(database_url) as conn:
        rows = await conn.fetch("SELECT center_id, day, revision, event_id, payload::text AS payload, published_at"
                                " FROM outcome_feed ORDER BY center_id, day, revision")
    return [{**dict(row), "payload": orjson.loads(row["payload"])} for row in rows]
