"""The outcome report's reads: counts from the daily aggregates, exact statistics from the facts.

Counts come from ``outcome_daily`` (kept by ``sinks.aggregates`` as events are stored). Response
times and repeat contacts are computed at report time from ``outcome_calls``, exactly
(``percentile_disc``: nearest rank), on the ``(center_id, received_at)`` and ``(person_ref,
received_at)`` indexes. Days and hours are the policy's time zone, as the aggregates store them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from domain.outcome_report import DAY_MEASURES, HOUR_MEASURES, INTERVALS, Stat, period_of
from domain.outcomes import MEASURES
from sinks.queries import connection

# Table id of a row in the chosen breakdown, from a local calendar day (``{day}``) or the row itself.
_GROUP = {
    "day": "'day:' || ({day})::text",
    "week": "'week:' || (({day}) - (extract(isodow FROM {day})::int - 1))::text",
    "month": "'month:' || date_trunc('month', {day})::date::text",
    "district": "'district:' || {district}",
    "center": "'center:' || {center}",
}


def group_sql(by: str, day: str, district: str = "district", center: str = "center_id") -> str:
    """The SQL expression of a row's table id in breakdown ``by``."""
    return _GROUP[by].format(day=day, district=district, center=center)


def _bound(sql: str, lower: datetime, upper: datetime, zone: ZoneInfo) -> tuple[Any, ...]:
    """The parameters of a facts query: the time zone only when its breakdown is by a local date."""
    return (lower, upper, zone.key) if "$3" in sql else (lower, upper)


def utc_bounds(start: date, end: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants where local day ``start`` begins and local day ``end`` ends."""
    return (datetime.combine(start, time(0), zone), datetime.combine(end + timedelta(days=1), time(0), zone))


async def report_counts(database_url: str, start: date, end: date, by: str) -> dict[str, dict[str, int]]:
    """Counts by table id: ``all``, the breakdown's groups, ``route:*``, ``hour:*`` and the periods of routes
    over time (``week:*`` when the breakdown is not a period itself)."""
    tables: dict[str, dict[str, int]] = defaultdict(dict)
    queries = [
        ("'all'", None),
        (group_sql(by, "day"), None),
        ("'route:' || route", None),
        ("'hour:' || lpad(hour::text, 2, '0')", list(HOUR_MEASURES)),
        *([(group_sql("week", "day"), list(DAY_MEASURES))] if period_of(by) != by else []),
    ]
    async with connection(database_url) as conn:
        for table, only in queries:
            rows = await conn.fetch(
                f"SELECT {table} AS t, measure, sum(n)::bigint AS n FROM outcome_daily"
                " WHERE day BETWEEN $1 AND $2 AND ($3::text[] IS NULL OR measure = ANY($3::text[]))"
                " GROUP BY 1, 2", start, end, only)
            for row in rows:
                tables[row["t"]][row["measure"]] = int(row["n"])
    for table, counts in tables.items():
        measures: Sequence[str] = MEASURES
        if table.startswith("week:") and by != "week":
            measures = DAY_MEASURES
        elif table.startswith("hour:"):
            measures = HOUR_MEASURES
        for measure in measures:
            counts.setdefault(measure, 0)
    tables.setdefault("all", dict.fromkeys(MEASURES, 0))
    return dict(tables)


async def report_stats(database_url: str, start: date, end: date, by: str, zone: ZoneInfo
                       ) -> dict[str, dict[str, Stat]]:
    """Per table id (``all`` and the groups): ``<interval>:<response>`` -> count, median, 90th percentile."""
    lower, upper = utc_bounds(start, end, zone)
    local_day = "(received_at AT TIME ZONE $3)::date"
    measured = ", ".join(
        f"count({name}) AS {name}_n, percentile_disc(0.5) WITHIN GROUP (ORDER BY {name}) AS {name}_median,"
        f" percentile_disc(0.9) WITHIN GROUP (ORDER BY {name}) AS {name}_p90" for name in INTERVALS)
    sql = (
        "WITH f AS ("
        f" SELECT {group_sql(by, local_day)} AS t, team_response AS response,"
        "  CASE WHEN team_dispatched_at <= team_arrived_at"
        "       THEN extract(epoch FROM team_arrived_at - team_dispatched_at)::float8 END AS dispatch_to_arrival,"
        "  CASE WHEN team_requested_at <= team_arrived_at"
        "       THEN extract(epoch FROM team_arrived_at - team_requested_at)::float8 END AS request_to_arrival,"
        "  CASE WHEN team_arrived_at <= closed_at"
        "       THEN extract(epoch FROM closed_at - team_arrived_at)::float8 END AS on_scene"
        " FROM outcome_calls WHERE received_at >= $1 AND received_at < $2 AND program_route IS NOT NULL"
        "  AND team_arrived_at IS NOT NULL AND team_response IS NOT NULL)"
        f" SELECT CASE WHEN grouping(t) = 1 THEN 'all' ELSE t END AS t, response, {measured}"
        " FROM f GROUP BY GROUPING SETS ((t, response), (response))"
    )
    stats: dict[str, dict[str, Stat]] = defaultdict(dict)
    async with connection(database_url) as conn:
        for row in await conn.fetch(sql, *_bound(sql, lower, upper, zone)):
            for name in INTERVALS:
                stats[row["t"]][f"{name}:{row['response']}"] = Stat(
                    int(row[f"{name}_n"]), row[f"{name}_median"], row[f"{name}_p90"])
    return dict(stats)


async def repeat_contacts(database_url: str, start: date, end: date, by: str, zone: ZoneInfo
                          ) -> dict[str, dict[str, int]]:
    """Per table id: people with a behavioral-health call in the range, and those with another call of
    theirs at most 30 and 90 days before one of those (the earlier one may be before the range)."""
    lower, upper = utc_bounds(start, end, zone)
    local_day = "(received_at AT TIME ZONE $3)::date"
    sql = (
        "WITH c AS ("
        f" SELECT call_id, person_ref, received_at, {group_sql(by, local_day)} AS t FROM outcome_calls"
        " WHERE person_ref IS NOT NULL AND behavioral_health"
        "  AND received_at >= $1::timestamptz - interval '90 days' AND received_at < $2),"
        " w AS (SELECT *, lag(received_at) OVER (PARTITION BY person_ref ORDER BY received_at, call_id) AS prev"
        "  FROM c)"
        " SELECT CASE WHEN grouping(t) = 1 THEN 'all' ELSE t END AS t, count(DISTINCT person_ref) AS people,"
        " count(DISTINCT person_ref) FILTER (WHERE received_at - prev <= interval '30 days') AS repeat_30d,"
        " count(DISTINCT person_ref) FILTER (WHERE received_at - prev <= interval '90 days') AS repeat_90d"
        " FROM w WHERE received_at >= $1 GROUP BY GROUPING SETS ((t), ())"
    )
    async with connection(database_url) as conn:
        rows = await conn.fetch(sql, *_bound(sql, lower, upper, zone))
    out = {row["t"]: {"people": int(row["people"]), "repeat_30d": int(row["repeat_30d"]),
                      "repeat_90d": int(row["repeat_90d"])} for row in rows}
    out.setdefault("all", {"people": 0, "repeat_30d": 0, "repeat_90d": 0})
    return out


async def arrival_seconds(database_url: str, start: date, end: date, zone: ZoneInfo) -> list[float]:
    """Request-to-arrival seconds of every team arrival of the range (no ids: durations only)."""
    lower, upper = utc_bounds(start, end, zone)
    async with connection(database_url) as conn:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM team_arrived_at - team_requested_at)::float8 AS s FROM outcome_calls"
            " WHERE received_at >= $1 AND received_at < $2 AND program_route IS NOT NULL"
            " AND team_arrived_at IS NOT NULL AND team_requested_at IS NOT NULL"
            " AND team_requested_at <= team_arrived_at", lower, upper)
    return [float(row["s"]) for row in rows]


async def start_report_run(database_url: str, run: dict[str, Any]) -> int:
    """Record a report run before it reads anything (the audit keeps failed runs too); returns its id."""
    async with connection(database_url) as conn:
        return int(await conn.fetchval(
            "INSERT INTO report_runs (operator, os_user, started_at, from_day, to_day, by, format, out_path, status)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running') RETURNING id",
            run["operator"], run["os_user"], run["started_at"], run["from_day"], run["to_day"], run["by"],
            run["format"], run["out_path"]))


async def finish_report_run(database_url: str, run_id: int, status: str, finished_at: datetime,
                            cells: int | None = None, suppressed: int | None = None, error: str | None = None
                            ) -> None:
    async with connection(database_url) as conn:
        await conn.execute(
            "UPDATE report_runs SET status = $2, finished_at = $3, cells = $4, suppressed_cells = $5, error = $6"
            " WHERE id = $1", run_id, status, finished_at, cells, suppressed, error)


async def report_runs(database_url: str) -> list[dict[str, Any]]:
    """Every recorded report run, oldest first."""
    async with connection(database_url) as conn:
        return [dict(row) for row in await conn.fetch("SELECT * FROM report_runs ORDER BY id")]


async def outcome_facts(database_url: str) -> list[asyncpg.Record]:
    """Every call's outcome facts (tests and diagnostics)."""
    async with connection(database_url) as conn:
        return list(await conn.fetch("SELECT * FROM outcome_calls ORDER BY call_id"))


async def unfed_days(database_url: str, start: date, end: date) -> int:
    """Center-days within ``start``..``end`` whose counts changed after their latest feed record was made
    (the next feed round revises the closed ones; tests and diagnostics)."""
    async with connection(database_url) as conn:
        return int(await conn.fetchval(
            "SELECT count(*) FROM outcome_days WHERE version > fed_version AND day BETWEEN $1 AND $2", start, end))


async def daily_counts(database_url: str) -> dict[tuple[Any, ...], int]:
    """Every non-zero aggregate row, by (center, day, hour, district, route, measure) (tests and diagnostics)."""
    async with connection(database_url) as conn:
        rows = await conn.fetch("SELECT center_id, day, hour, district, route, measure, n FROM outcome_daily"
                                " WHERE n <> 0")
    return {(r["center_id"], r["day"], r["hour"], r["district"], r["route"], r["measure"]): int(r["n"])
            for r in rows}
