"""The report and the feed record built from counts alone (no database): every format renders the same
suppressed figures, and the feed's record is deterministic per revision."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime

from agents.outcomes_feed import day_end, record_for
from crisis.report_render import RENDERERS
from domain.outcome_report import Stat, build_report
from domain.outcomes import MEASURES
from domain.policy import load_policy

ZONE = load_policy().zone


def counts() -> dict[str, dict[str, int]]:
    north = {m: 0 for m in MEASURES} | {"calls": 120, "behavioral_health": 100, "route:diversion_line": 60,
                                        "route:co_responder": 40, "route:not_eligible": 20, "eligible": 100,
                                        "status:served": 93, "status:unserved": 7, "unserved:never_dispatched": 7,
                                        "transferred": 60, "resolved_without_field_unit": 55}
    south = {m: 0 for m in MEASURES} | {"calls": 80, "behavioral_health": 80, "route:diversion_line": 50,
                                        "route:co_responder": 30, "eligible": 80, "status:served": 80,
                                        "transferred": 50, "resolved_without_field_unit": 50}
    return {"all": {m: north[m] + south[m] for m in MEASURES}, "district:north": north, "district:south": south}


def build():  # type: ignore[no-untyped-def]
    stats = {"all": {"request_to_arrival:first": Stat(40, 420.0, 900.0)},
             "district:north": {"request_to_arrival:first": Stat(7, 400.0, 800.0)}}
    return build_report(date(2026, 9, 1), date(2026, 9, 30), "district", ZONE.key,
                        ["all", "district:north", "district:south"], counts(), stats)


def test_small_cells_their_complements_and_small_samples_are_suppressed():
    report = build()
    funnel = next(s for s in report.sections if s.key == "funnel")
    assert funnel.figures["unserved:never_dispatched"]["district:north"].suppressed  # 7
    # 93 served of 100 would give the 7 away: one of them goes too, and the share with it.
    assert funnel.figures["status:served"]["district:north"].suppressed
    assert funnel.figures["status:served%"]["district:north"].suppressed
    diversion = next(s for s in report.sections if s.key == "diversion")
    assert diversion.figures["resolved_without_field_unit"]["district:north"].suppressed  # 60 - 55 = 5
    times = next(s for s in report.sections if s.key == "times")
    assert times.figures["request_to_arrival:first:median"]["all"].value == 420.0
    assert times.figures["request_to_arrival:first:median"]["district:north"].suppressed  # 7 calls
    assert times.figures["request_to_arrival:first:median"]["district:south"].no_data


def test_every_format_shows_the_same_figures_and_says_what_is_suppressed():
    report = build()
    report.meta.update(generated_at="2026-10-01T00:00:00+00:00", operator="pm", run_id=1)
    texts = {name: render(report) for name, render in RENDERERS.items()}
    document = json.loads(texts["json"])
    calls = next(f for s in document["sections"] for f in s["figures"] if f["key"] == "calls")
    assert calls["values"] == {"all": 200, "district:north": 120, "district:south": 80}
    assert "district:north|unserved:never_dispatched" in document["suppression"]["suppressed_cells"]
    rows = list(csv.DictReader(io.StringIO(texts["csv"])))
    never = [r for r in rows if r["figure"] == "unserved:never_dispatched" and r["column"] == "district:north"]
    assert never == [{**never[0], "value": "", "suppressed": "true"}]
    assert "| Calls | 200 | 120 | 80 |" in texts["md"]
    assert texts["html"].count("<svg") >= 4 and "<script" not in texts["html"]  # no periods, no arrivals here


def test_the_feed_record_is_the_same_for_the_same_counts_and_revision():
    day = date(2026, 9, 3)
    at = datetime(2026, 9, 4, 8, tzinfo=UTC)
    first, first_hash = record_for("stl-911", day, 1, counts()["district:north"], ZONE, 10, at)
    again, again_hash = record_for("stl-911", day, 1, counts()["district:north"], ZONE, 10, at)
    revised, revised_hash = record_for("stl-911", day, 2, counts()["district:north"] | {"calls": 121}, ZONE, 10, at)
    assert first == again and first_hash == again_hash
    assert revised.event_id != first.event_id and revised_hash != first_hash
    assert first.counts["unserved:never_dispatched"] is None and "unserved:never_dispatched" in first.suppressed
    assert "person_ref" not in first.model_dump_json()
    assert day_end(day, ZONE) == datetime(2026, 9, 4, 5, tzinfo=UTC)  # midnight in Chicago (CDT)
