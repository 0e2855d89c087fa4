"""`crisis report`: read the outcome aggregates and facts, suppress small cells, render, record the run."""

from __future__ import annotations

import asyncio
import getpass
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from crisis.report_render import RENDERERS
from domain.outcome_report import ARRIVAL_BINS, Report, build_report, nearest_rank
from domain.outcomes import MEASURES
from domain.suppression import sensitive
from sinks import outcome_queries as q

FORMATS = tuple(RENDERERS)


@dataclass(frozen=True)
class ReportRequest:
    start: date
    end: date
    by: str
    format: str
    out: Path | None
    operator: str
    threshold: int


def operator_name(option: str | None) -> tuple[str, str]:
    """(operator, OS user): ``--operator``, else ``$CRISIS_OPERATOR``, else the OS user."""
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        os_user = f"uid-{os.getuid()}"
    return option or os.environ.get("CRISIS_OPERATOR") or os_user, os_user


def columns_for(by: str, start: date, end: date, tables: dict[str, dict[str, int]]) -> list[str]:
    """``all`` and the breakdown's groups: every day, week or month of the range; districts and centers found."""
    if by in ("district", "center"):
        return ["all", *sorted(t for t in tables if t.startswith(f"{by}:"))]
    periods: list[str] = []
    day = start
    while day <= end:
        if by == "day":
            key = day
        elif by == "week":
            key = day - timedelta(days=day.weekday())
        else:
            key = day.replace(day=1)
        label = f"{by}:{key.isoformat()}"
        if label not in periods:
            periods.append(label)
        day += timedelta(days=1)
    return ["all", *periods]


def arrival_histogram(seconds: list[float]) -> dict[str, int]:
    """Counts by bin of minutes, ``bin:000-005`` ... ``bin:060+``."""
    names = _bin_names()
    counts = dict.fromkeys(names, 0)
    for value in seconds:
        minutes = value / 60
        name = names[-1]
        for low, high, label in zip(ARRIVAL_BINS, ARRIVAL_BINS[1:], names, strict=False):
            if low <= minutes < high:
                name = label
                break
        counts[name] += 1
    return counts


def _bin_names() -> list[str]:
    names = [f"bin:{low:03d}-{high:03d}" for low, high in itertools.pairwise(ARRIVAL_BINS)]
    return [*names, f"bin:{ARRIVAL_BINS[-1]:03d}+"]


async def gather(database_url: str, request: ReportRequest, zone: ZoneInfo,
                 step: Callable[[str], None]) -> Report:
    """Every read the report needs, then suppression; ``step`` names each stage (the progress indicator)."""
    step("reading the daily aggregates")
    tables = await q.report_counts(database_url, request.start, request.end, request.by)
    columns = columns_for(request.by, request.start, request.end, tables)
    for column in columns:
        tables.setdefault(column, dict.fromkeys(MEASURES, 0))
    step("computing response-time percentiles")
    stats = await q.report_stats(database_url, request.start, request.end, request.by, zone)
    step("counting repeat contacts")
    repeats = await q.repeat_contacts(database_url, request.start, request.end, request.by, zone)
    for column in columns:
        tables[column].update(repeats.get(column, {"people": 0, "repeat_30d": 0, "repeat_90d": 0}))
    seconds = await q.arrival_seconds(database_url, request.start, request.end, zone)
    tables["arrival"] = arrival_histogram(seconds)
    step("suppressing small cells")
    report = build_report(request.start, request.end, request.by, zone.key, columns, tables, stats,
                          request.threshold)
    shown = not sensitive(len(seconds), request.threshold) and bool(seconds)
    report.meta["arrival_median_seconds"] = nearest_rank(seconds, 0.5) if shown else None
    report.meta["arrival_p90_seconds"] = nearest_rank(seconds, 0.9) if shown else None
    return report


def run_report(database_url: str, request: ReportRequest, zone: ZoneInfo, os_user: str,
               step: Callable[[str], None] = lambda _: None) -> tuple[Report, str, float]:
    """Record the run, build the report, render it; returns the report, its text and the seconds it took."""
    started = datetime.now(UTC)
    clock = time.perf_counter()
    run_id = asyncio.run(q.start_report_run(database_url, {
        "operator": request.operator, "os_user": os_user, "started_at": started, "from_day": request.start,
        "to_day": request.end, "by": request.by, "format": request.format,
        "out_path": str(request.out) if request.out else None}))
    try:
        report = asyncio.run(gather(database_url, request, zone, step))
        report.meta.update(generated_at=started.isoformat(timespec="seconds"), operator=request.operator,
                           run_id=run_id)
        step(f"rendering {request.format}")
        text = RENDERERS[request.format](report)
    except BaseException as exc:
        asyncio.run(q.finish_report_run(database_url, run_id, "failed", datetime.now(UTC), error=repr(exc)[:2000]))
        raise
    asyncio.run(q.finish_report_run(database_url, run_id, "ok", datetime.now(UTC), report.cells,
                                    len(report.suppressed)))
    return report, text, time.perf_counter() - clock
