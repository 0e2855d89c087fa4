"""Issue 9's acceptance on Apache Kafka and PostgreSQL: a seeded simulated month through two real workers.

Every aggregate row and every report figure equals what ``outcomes_oracle`` computes from the generated
events alone; replaying every event changes nothing; a team arrival the CAD delivers weeks late
revises its day, and the partner feed carries the revision. The report renders in all four formats and
the HTML one, screenshotted by headless Chromium, shows its charts.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from crisis.publish import publish_events
from crisis.report import ReportRequest, run_report
from crisis.simulate import City, CitySettings, SimulatedEvent
from domain.outcome_report import SECTIONS
from domain.policy import load_policy
from sinks.outcome_feed import feed_records
from sinks.outcome_queries import daily_counts, report_runs, unfed_days
from streams import topics
from tests.conftest import wait_until
from tests.integration import outcomes_oracle as oracle
from tests.integration.kafka_io import read_all

pytestmark = pytest.mark.integration

POLICY = load_policy()
CALLS = 400


def month_start() -> date:
    """The first day of a month well in the past (events may not be ahead of the wall clock), so the
    follow-up windows after it are past too."""
    back = datetime.now(UTC).date() - timedelta(days=110)
    return back.replace(day=1)


def simulated(to: date) -> list[SimulatedEvent]:
    start = month_start()
    first = datetime.combine(start, time(6), POLICY.zone).astimezone(UTC)
    hours = (datetime.combine(to, time(23), POLICY.zone) - datetime.combine(start, time(0), POLICY.zone))
    rate = CALLS / (hours.total_seconds() / 3600) * 0.97
    city = City(POLICY, seed=20, settings=CitySettings(calls_per_hour=rate, override_away_share=0.02), start_at=first,
                run_tag="month")
    return city.events(CALLS)


async def publish_to_partitions(bootstrap: str, topic: str, bodies: list[dict[str, Any]]) -> None:
    """One event on each partition, in order (ticks of event time, markers of progress)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, body in enumerate(bodies):
            await producer.send_and_wait(topic, json.dumps(body).encode(), key=body["call_id"].encode(),
                                         partition=partition)
    finally:
        await producer.stop()


async def scalar(db: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(db)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def ticks(at: datetime, tag: str) -> list[dict[str, Any]]:
    """Calls far after the month on every partition (no concern: no timer, no follow-up): event time passes
    every deadline and closes every day for the feed."""
    return [{"type": "call.received", "event_id": f"tick-{tag}-{p}", "call_id": f"tick-{tag}-{p}",
             "occurred_at": at.isoformat(), "center_id": "stl-911", "nature_code": "TRAFFIC", "concerns": [],
             "district": "district-1"} for p in range(4)]


def markers(tag: str) -> list[dict[str, Any]]:
    return [{"type": "unit.dispatched", "event_id": f"marker-{tag}-{p}", "call_id": f"marker-{tag}-{p}",
             "occurred_at": datetime.now(UTC).isoformat(), "unit_id": "P1", "unit_type": "police"} for p in range(4)]


async def stored(db: str, event_ids: list[str]) -> bool:
    """Whether every one of these inbound events is stored (a call, or a lifecycle event)."""
    return int(await scalar(db, "SELECT (SELECT count(*) FROM call_events WHERE event_id = ANY($1::text[]))"
                                " + (SELECT count(*) FROM calls WHERE event_id = ANY($1::text[]))"
                                " + (SELECT count(*) FROM triage_decisions WHERE type = 'triage.overridden'"
                                "    AND source_event_id = ANY($1::text[]))",
                            event_ids)) == len(event_ids)


def day_totals(expected: dict[tuple[Any, ...], int]) -> dict[tuple[str, date], Counter[str]]:
    totals: dict[tuple[str, date], Counter[str]] = {}
    for (center, day, _h, _d, _r, measure), n in expected.items():
        totals.setdefault((center, day), Counter())[measure] += n
    return totals


def latest_records(records: list[dict[str, Any]]) -> dict[tuple[str, date], dict[str, Any]]:
    latest: dict[tuple[str, date], dict[str, Any]] = {}
    for record in records:
        latest[(record["center_id"], record["day"])] = record
    return latest


async def test_a_simulated_month_end_to_end(pipeline_env, tmp_path):
    env, bootstrap, db = pipeline_env, pipeline_env.settings.kafka_bootstrap, pipeline_env.settings.database_url
    start = month_start()
    end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    events = simulated(end)  # with the follow-up team's attempts and completions
    bodies = [json.loads(e.value) for e in events]
    tick_at = datetime.combine(end, time(12), POLICY.zone) + timedelta(days=45)
    worker_env = {"CRISIS_TIMER_CLOCK": "event", "CRISIS_OUTCOMES_LATENESS_SECONDS": "3600",
                  "CRISIS_OUTCOMES_FEED_INTERVAL_SECONDS": "0.5", "CRISIS_SUPPRESSION_THRESHOLD": "0"}
    first, second = env.worker(**worker_env), env.worker(**worker_env)
    topic = env.topic(topics.CALLS)

    await publish_events(bootstrap, topic, events)
    await publish_to_partitions(bootstrap, topic, ticks(tick_at, "a"))
    everything = bodies + ticks(tick_at, "a")
    await wait_until(lambda: stored(db, [b["event_id"] for b in everything]), 120)
    running = "SELECT count(*) FROM timers WHERE next_deadline_at IS NOT NULL"
    await wait_until(lambda: _equals(db, running, 0), 60)

    # Every aggregate row equals the independent computation.
    expected = oracle.daily(oracle.classify_all(everything, POLICY))
    assert await daily_counts(db) == expected, first.log_tail() + second.log_tail()
    month_days = {(c, d) for c, d, *_ in expected if start <= d <= end}
    assert len(month_days) == end.day

    # The feed: each closed day's latest revision carries exactly its counts.
    async def fed() -> bool:
        # Every month day's latest counts revised and published (a round can publish a day that a batch
        # committed after it changes again: the next round revises it).
        if await unfed_days(db, start, end):
            return False
        records = await feed_records(db)
        latest = latest_records(records)
        return all(latest.get(k, {}).get("published_at") is not None for k in month_days) and not [
            r for r in records if r["published_at"] is None]
    await wait_until(fed, 60)
    totals = day_totals(expected)
    before_replay = await feed_records(db)
    for key, record in latest_records(before_replay).items():
        if key in month_days:
            counts = record["payload"]["counts"]
            assert {m: n for m, n in counts.items() if n} == dict(+totals[key]), key

    # Re-running the same events changes nothing: no count, no revision.
    await publish_events(bootstrap, topic, events)
    await publish_to_partitions(bootstrap, topic, markers("replay"))
    await wait_until(lambda: stored(db, [m["event_id"] for m in markers("replay")]), 120)
    await asyncio.sleep(1.5)  # three feed rounds
    assert await daily_counts(db) == expected
    assert [(r["center_id"], r["day"], r["revision"]) for r in await feed_records(db)] == [
        (r["center_id"], r["day"], r["revision"]) for r in before_replay]

    # The report: every figure equals the oracle (suppression off here, tested on its own), in all formats.
    await check_report(db, everything, start, end, tmp_path)

    # Weeks later the CAD delivers an arrival it had lost: the call's day is revised and fed again.
    late_call = next(c for c in oracle.calls_of(bodies).values()
                     if any(e["type"] == "unit.dispatched" and e["unit_type"] == "co_responder" for e in c.events)
                     and not any(e["type"] == "unit.arrived" and e["unit_type"] == "co_responder" for e in c.events)
                     and any(e["type"] == "call.closed" for e in c.events))
    close = next(e for e in late_call.events if e["type"] == "call.closed")
    late = {"type": "unit.arrived", "event_id": "late-arrival", "call_id": late_call.call_id,
            "occurred_at": (datetime.fromisoformat(close["occurred_at"]) - timedelta(minutes=1)).isoformat(),
            "unit_id": "CRU9", "unit_type": "co_responder"}
    producer_events = [SimulatedEvent(datetime.now(UTC), late["call_id"], json.dumps(late).encode(), late["type"])]
    await publish_events(bootstrap, topic, producer_events)
    await wait_until(lambda: stored(db, ["late-arrival"]), 60)
    revised_expected = oracle.daily(oracle.classify_all([*everything, late], POLICY))
    assert revised_expected != expected
    assert await daily_counts(db) == revised_expected
    received = datetime.fromisoformat(late_call.received["occurred_at"])  # type: ignore[index]
    late_day = ("stl-911", received.astimezone(POLICY.zone).date())
    previous_revision = latest_records(before_replay)[late_day]["revision"]

    async def revised() -> dict[str, Any] | None:
        records = [json.loads(r.value) for r in await read_all(bootstrap, env.topic(topics.OUTCOMES))]
        mine = [r for r in records if (r["center_id"], date.fromisoformat(r["day"])) == late_day
                and r["revision"] == previous_revision + 1]
        return mine[0] if mine else None
    record = await wait_until(revised, 60)
    assert {m: n for m, n in record["counts"].items() if n} == dict(+day_totals(revised_expected)[late_day])
    assert record["counts"]["status:served"] == totals[late_day]["status:served"] + 1
    published = [json.loads(r.value) for r in await read_all(bootstrap, env.topic(topics.OUTCOMES))]
    assert all("person_ref" not in r and "caller_phone" not in r for r in published)
    ids = Counter(r["event_id"] for r in published)
    assert len({(r["center_id"], r["day"], r["revision"]) for r in published}) == len(ids)


async def _equals(db: str, sql: str, value: int) -> bool:
    return int(await scalar(db, sql)) == value


BREAKDOWNS: dict[str, Any] = {
    "week": lambda c: oracle.week_of(c.key[1]),
    "day": lambda c: f"day:{c.key[1].isoformat()}",
    "month": lambda c: f"month:{c.key[1].replace(day=1).isoformat()}",
    "district": lambda c: f"district:{c.key[3]}",
    "center": lambda c: f"center:{c.key[0]}",
}


async def check_report(db: str, everything: list[dict[str, Any]], start: date, end: date, tmp_path: Path) -> None:
    classified = [c for c in oracle.classify_all(everything, POLICY)
                  if start <= c.key[1] <= end]
    checked = 0
    for by, group in BREAKDOWNS.items():
        checked += await check_breakdown(db, classified, start, end, by, group)
    assert checked > 2500, checked

    # All four formats from this database, suppression on; the HTML opens offline and shows its charts.
    await check_formats(db, start, end, tmp_path)


async def check_breakdown(db: str, classified: list[oracle.Classified], start: date, end: date, by: str,
                          group: Any) -> int:
    """Every count, share, percentile and hourly figure of one breakdown equals the oracle's."""
    columns: dict[str, Counter[str]] = {"all": Counter()}
    for c in classified:
        for column in ("all", group(c)):
            columns.setdefault(column, Counter()).update(c.measures)
    repeats = oracle.repeats(classified, start, end, POLICY, group)
    request = ReportRequest(start, end, by, "json", None, "month-test", 0)
    report, text, _seconds = await asyncio.to_thread(run_report, db, request, POLICY.zone, "tester")
    document = json.loads(text)
    assert set(document["columns"]) >= set(columns), by
    checked = 0
    for section in document["sections"]:
        for figure in section["figures"]:
            if figure["kind"] != "count":
                continue
            for column, value in figure["values"].items():
                source = repeats.get(column, Counter()) if section["key"] == "repeat" else columns.get(column,
                                                                                                      Counter())
                assert value == source[figure["key"]], (by, section["key"], figure["key"], column)
                checked += 1
    share_of = {row.key: row.share_of for _, _, _, rows in SECTIONS for row in rows if row.share_of}
    for section in document["sections"]:
        for figure in section["figures"]:
            if figure["kind"] != "percent":
                continue
            key = figure["key"].removesuffix("%")
            of = share_of[key]
            for column, value in figure["values"].items():
                source = repeats.get(column, Counter()) if section["key"] == "repeat" else columns.get(column,
                                                                                                      Counter())
                parts = of.removeprefix("sum:").split("+")
                denominator = sum(source[p] for p in parts)
                assert value == (round(100 * source[key] / denominator, 1) if denominator else None), (by, key, column)
                checked += 1
    times = next(s for s in document["sections"] if s["key"] == "times")
    for figure in times["figures"]:
        interval, response, statistic = figure["key"].split(":")
        for column, value in figure["values"].items():
            values = [getattr(c, interval) for c in classified if c.response == response
                      and getattr(c, interval) is not None and column in ("all", group(c))]
            expected = oracle.nearest_rank(values, 0.5 if statistic == "median" else 0.9)
            assert value == expected, (figure["key"], column)
            checked += 1
    hourly = Counter()
    for c in classified:
        for measure in ("calls", "eligible", "status:served"):
            hourly[(f"hour:{c.key[2]:02d}", measure)] += c.measures[measure]
    for hour, figures in document["by_hour"].items():
        for measure in ("calls", "eligible", "status:served"):
            assert figures["values"][measure] == hourly[(hour, measure)], (hour, measure)
    assert math.isclose(report.meta["arrival_median_seconds"], oracle.nearest_rank(
        [c.request_to_arrival for c in classified if c.request_to_arrival is not None], 0.5))
    return checked


async def check_formats(db: str, start: date, end: date, tmp_path: Path) -> None:
    for fmt in ("md", "csv", "json", "html"):
        suppressed = ReportRequest(start, end, "week", fmt, None, "month-test", 10)
        _, text, _ = await asyncio.to_thread(run_report, db, suppressed, POLICY.zone, "tester")
        assert "tick-" not in text and "+1314" not in text and "person_ref\"" not in text
        (tmp_path / f"report.{fmt}").write_text(text)
    csv_text = (tmp_path / "report.csv").read_text()
    assert ",true\n" in csv_text  # the csv says which cells were suppressed
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") >= 5 and "<script" not in html and "http" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert_screenshot_shows_charts(tmp_path / "report.html", tmp_path / "report.png")
    runs = await report_runs(db)
    assert [(r["format"], r["status"], r["operator"]) for r in runs][-4:] == [
        ("md", "ok", "month-test"), ("csv", "ok", "month-test"), ("json", "ok", "month-test"),
        ("html", "ok", "month-test")]


def assert_screenshot_shows_charts(html: Path, png: Path) -> None:
    """Headless Chromium renders the file; the top of the page (the charts) is far from blank."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed: run `make deps` (Debian package chromium)"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1100,1500", "--force-device-scale-factor=0.5", f"--screenshot={png}",
                    html.as_uri()],
                   check=True, capture_output=True, timeout=120)
    from tests.integration.png import distinct_colours, non_white_share

    assert non_white_share(png) > 0.04, "the screenshot is (nearly) blank"
    assert distinct_colours(png) >= 6, "the screenshot has no coloured charts"
