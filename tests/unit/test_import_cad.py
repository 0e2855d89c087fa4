"""`crisis import-cad`: every shipped export format's fixture, counted and timed exactly.

The fixtures in tests/fixtures/cad/ are invented rows in the shapes of the public exports the
mappings in deploy/cad-mappings/ were written for (see tests/fixtures/README.md). Every interval
the import produces is checked against the export's own timestamps, computed here independently.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from crisis.cli import app
from crisis.import_cad import CadImportError, convert_export, load_mapping, outgoing
from crisis.services import REPO_ROOT
from domain.cad_export import Conversion, ImportedEvent
from domain.policy import load_policy
from domain.triage import triage
from schemas.calls import CallClosed, CallReceived, Disposition, UnitType, decode_call_event

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "cad"
MAPPINGS = REPO_ROOT / "deploy" / "cad-mappings"
runner = CliRunner()


def imported(fixture: str, mapping: str) -> Conversion:
    return convert_export(FIXTURES / fixture, load_mapping(MAPPINGS / mapping))


def fixture_rows(fixture: str) -> list[dict[str, str]]:
    with (FIXTURES / fixture).open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def by_call(events: list[ImportedEvent]) -> dict[str, list[ImportedEvent]]:
    calls: dict[str, list[ImportedEvent]] = defaultdict(list)
    for event in events:
        calls[event.call_id].append(event)
    return calls


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def problem_lines(result: Conversion) -> dict[int, str]:
    return {problem.line: problem.message for problem in result.problems}


# --------------------------------------------------------------------------------------------
# Lancaster County NE: one row per call, unit lists of times of day, MPDS determinants
# --------------------------------------------------------------------------------------------


def test_lancaster_counts() -> None:
    result = imported("lancaster_ne_shape.csv", "lancaster-ne.toml")

    assert result.summary.as_dict() == {"rows": 12, "rows_rejected": 2, "calls": 10, "dispatches": 16,
                                        "arrivals": 14, "closes": 0, "problems": 4}
    problems = problem_lines(result)
    assert set(problems) == {8, 11, 12, 13}
    assert "no dispatch time to date the call" in problems[8]
    assert "'M6 06:08:00' is not UNIT=TIME" in problems[11]
    assert "unit M8 arrived" in problems[12] and "before the call was received" in problems[12]
    assert "no incident number" in problems[13]


def _clock_seconds(text: str) -> int:
    hours, minutes, secs = (int(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + secs


def _local_clock(moment: datetime) -> int:
    local = moment.astimezone(ZoneInfo("America/Chicago"))
    return local.hour * 3600 + local.minute * 60 + local.second


def _unit_list(text: str) -> list[tuple[str, int]]:
    entries = []
    for entry in text.split(","):
        unit, sep, clock = entry.strip().partition("=")
        if sep:
            entries.append((unit, _clock_seconds(clock)))
    return entries


def test_lancaster_every_dispatch_to_arrival_interval_equals_the_exports_times() -> None:
    result = imported("lancaster_ne_shape.csv", "lancaster-ne.toml")
    calls = by_call(result.events)
    checked = 0
    for row in fixture_rows("lancaster_ne_shape.csv"):
        events = calls.get(f"lancaster-ne:{row['incident_num']}")
        if events is None:
            continue
        dispatched = dict(_unit_list(row["Unit_Dispatch_Times"]))
        received = events[0]
        assert isinstance(received, CallReceived)
        for unit, arrived_clock in _unit_list(row["Unit_Arrive_Times"]):
            # The export's own interval, on a 24-hour clock (an arrival after midnight wraps).
            expected = (arrived_clock - dispatched[unit]) % 86400
            arrivals = [e for e in events if e.type == "unit.arrived" and e.unit_id == unit
                        and _local_clock(e.occurred_at) == arrived_clock]
            if not arrivals:
                continue  # left out, and reported (arrival before the call)
            dispatch = next(e for e in events if e.type == "unit.dispatched" and e.unit_id == unit)
            assert [seconds(a.occurred_at, dispatch.occurred_at) for a in arrivals] == [expected] * len(arrivals)
            checked += len(arrivals)
    assert checked == 14


def test_lancaster_calls_start_at_the_first_dispatch_and_cross_midnight() -> None:
    calls = by_call(imported("lancaster_ne_shape.csv", "lancaster-ne.toml").events)
    chicago = ZoneInfo("America/Chicago")

    first = calls["lancaster-ne:26000101"]
    assert first[0].occurred_at == datetime(2026, 11, 2, 14, 2, 10, tzinfo=chicago)
    assert first[0].event_id == "lancaster-ne:26000101:received"
    midnight = calls["lancaster-ne:26000102"]
    sw1 = [e for e in midnight if e.type == "unit.arrived" and e.unit_id == "SW1"]
    assert [e.occurred_at for e in sw1] == [datetime(2026, 11, 3, 0, 4, 12, tzinfo=chicago)]
    assert sw1[0].event_id == "lancaster-ne:26000102:arrived:SW1:20261103T060412Z"
    assert {e.unit_type for e in midnight if e.type != "call.received"} == {UnitType.EMS}
    double = [e for e in calls["lancaster-ne:26000108"] if e.type == "unit.arrived" and e.unit_id == "RAYM1"]
    assert len(double) == 2, "two arrivals a few seconds apart are both kept (the worker counts the second)"


def test_lancaster_determinants_are_triaged_natively() -> None:
    policy = load_policy()
    received = {e.call_id: e for e in imported("lancaster_ne_shape.csv", "lancaster-ne.toml").events
                if isinstance(e, CallReceived)}

    violent = triage(received["lancaster-ne:26000101"], policy)
    assert "nature_code:25B6V -> violence_or_threat_to_others" in violent.reasons
    intentional = triage(received["lancaster-ne:26000102"], policy)
    assert "nature_code:23C1I -> imminent_risk_to_self" in intentional.reasons
    assert triage(received["lancaster-ne:26000105"], policy).unmapped_codes == ()  # FIREA: known
    assert [str(c) for c in triage(received["lancaster-ne:26000106"], policy).unmapped_codes] == ["nature_code:MEDLE"]


# --------------------------------------------------------------------------------------------
# NYC FDNY EMS: date columns + seconds since midnight, response times in seconds
# --------------------------------------------------------------------------------------------


def test_nyc_counts_and_every_interval_equals_the_exports_seconds() -> None:
    result = imported("nyc_fdny_ems_shape.csv", "nyc-fdny-ems.toml")

    assert result.summary.as_dict() == {"rows": 9, "rows_rejected": 1, "calls": 8, "dispatches": 8,
                                        "arrivals": 8, "closes": 0, "problems": 1}
    assert "CALL_TIME_seconds_since_midnight" in problem_lines(result)[10]
    calls = by_call(result.events)
    for row in fixture_rows("nyc_fdny_ems_shape.csv"):
        events = calls.get(f"nyc-fdny-ems:{row['CAD_INCIDENT_ID']}")
        if events is None:
            continue
        received, dispatched, arrived = events
        assert seconds(dispatched.occurred_at, received.occurred_at) == float(row["DISPATCH_RESPONSE_SECONDS_QY"])
        assert seconds(arrived.occurred_at, dispatched.occurred_at) == float(row["INCIDENT_TRAVEL_TM_SECONDS_QY"])
        assert seconds(arrived.occurred_at, received.occurred_at) == float(row["INCIDENT_RESPONSE_SECONDS_QY"])


def test_nyc_received_time_is_local_and_districts_are_cleaned() -> None:
    calls = by_call(imported("nyc_fdny_ems_shape.csv", "nyc-fdny-ems.toml").events)
    late = calls["nyc-fdny-ems:260010003"][0]
    assert isinstance(late, CallReceived)
    # 86,000 s after midnight of 2026-03-08 in New York (EDT since 03:00): 23:53:20 local.
    assert late.occurred_at == datetime(2026, 3, 9, 3, 53, 20, tzinfo=UTC)
    assert late.district == "BROOKLYN"
    assert calls["nyc-fdny-ems:260010002"][0].district == "BRONX"  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# Seattle Police: one row per event, queued and arrived times with AM/PM
# --------------------------------------------------------------------------------------------


def test_seattle_counts_and_received_to_arrival_equals_the_exports_times_across_dst() -> None:
    result = imported("seattle_spd_shape.csv", "seattle-spd.toml")

    assert result.summary.as_dict() == {"rows": 8, "rows_rejected": 1, "calls": 7, "dispatches": 0,
                                        "arrivals": 6, "closes": 0, "problems": 1}
    assert "matches none of the formats" in problem_lines(result)[9]
    seattle = ZoneInfo("America/Los_Angeles")
    calls = by_call(result.events)
    checked = 0
    for row in fixture_rows("seattle_spd_shape.csv"):
        events = calls.get(f"seattle-spd:{row['CAD Event Number']}")
        if events is None or not row["Arrived Time"]:
            continue
        queued, arrived = (datetime.strptime(row[c], "%m/%d/%Y %I:%M:%S %p").replace(tzinfo=seattle).astimezone(UTC)
                           for c in ("Original Time Queued", "Arrived Time"))
        assert seconds(events[1].occurred_at, events[0].occurred_at) == seconds(arrived, queued)
        checked += 1
    assert checked == 6
    # 01:30 PST to 03:05:10 PDT on the night clocks go forward: 35 min 10 s, not 95.
    first = calls["seattle-spd:2026000100001"]
    assert seconds(first[1].occurred_at, first[0].occurred_at) == 2110


# --------------------------------------------------------------------------------------------
# Montgomery County PA: no incident number, the time inside the description, no units
# --------------------------------------------------------------------------------------------


def test_montgomery_counts_hashed_ids_and_time_from_the_description() -> None:
    result = imported("montgomery_pa_shape.csv", "montgomery-pa.toml")

    assert result.summary.as_dict() == {"rows": 9, "rows_rejected": 2, "calls": 7, "dispatches": 0,
                                        "arrivals": 0, "closes": 0, "problems": 2}
    problems = problem_lines(result)
    assert "already on line 2" in problems[9]  # the same call in the feed twice
    assert "does not contain a time" in problems[10]
    first = next(e for e in result.events if isinstance(e, CallReceived) and e.nature_code == "EMS: OVERDOSE")
    assert first.occurred_at == datetime(2026, 11, 2, 17, 10, 52, tzinfo=ZoneInfo("America/New_York"))
    assert first.call_id.startswith("montgomery-pa:h") and len(first.call_id) == len("montgomery-pa:") + 17
    assert first.district == "NEW HANOVER"


# --------------------------------------------------------------------------------------------
# One row per unit (the example mapping), with unit types, clear times and dispositions
# --------------------------------------------------------------------------------------------


def test_unit_rows_counts_types_closes_and_intervals() -> None:
    result = imported("unit_rows_shape.csv", "unit-rows-example.toml")

    assert result.summary.as_dict() == {"rows": 10, "rows_rejected": 1, "calls": 6, "dispatches": 8,
                                        "arrivals": 6, "closes": 4, "problems": 4}
    problems = problem_lines(result)
    assert "no unit id" in problems[7]
    assert "'ODD-CODE'" in problems[9] and "call.closed left out" in problems[9]
    assert "unit CRT2 arrived" in problems[10]
    assert "'not a time'" in problems[11]
    calls = by_call(result.events)
    assert {(e.unit_id, e.unit_type) for e in calls["example-911:26-0502"] if e.type == "unit.dispatched"} == {
        ("P17", UnitType.POLICE), ("M3", UnitType.EMS), ("CRT2", UnitType.CO_RESPONDER)}
    crt_by_rule = [e for e in calls["example-911:26-0503"] if e.type == "unit.dispatched"]
    assert [e.unit_type for e in crt_by_rule] == [UnitType.CO_RESPONDER]
    closes = {e.call_id: e for e in result.events if isinstance(e, CallClosed)}
    assert {k: v.disposition for k, v in closes.items()} == {
        "example-911:26-0501": Disposition.STABILIZED_ON_SCENE, "example-911:26-0502": Disposition.TRANSPORTED,
        "example-911:26-0503": Disposition.LINKED_TO_SERVICES, "example-911:26-0504": Disposition.CANCELLED}
    assert closes["example-911:26-0502"].occurred_at == datetime(2026, 11, 2, 10, 5, tzinfo=ZoneInfo("America/Chicago"))
    chicago = ZoneInfo("America/Chicago")
    for row in fixture_rows("unit_rows_shape.csv"):
        events = calls.get(f"example-911:{row['Incident']}", [])
        unit = [e for e in events if e.type != "call.received" and getattr(e, "unit_id", None) == row["Unit"]]
        kinds = {e.type: e for e in unit}
        if "unit.arrived" in kinds:
            stamp = [datetime.strptime(row[c], "%Y-%m-%d %H:%M:%S").replace(tzinfo=chicago) for c in
                     ("Dispatched", "Arrived")]
            assert seconds(kinds["unit.arrived"].occurred_at, kinds["unit.dispatched"].occurred_at) == \
                seconds(stamp[1], stamp[0])
    assert calls["example-911:26-0502"][0].mpds_code == "25-B-3"  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# Identity: the same export twice, or an overlapping one, gives the same events
# --------------------------------------------------------------------------------------------


def test_importing_twice_or_an_overlapping_export_gives_identical_events(tmp_path: Path) -> None:
    mapping = load_mapping(MAPPINGS / "lancaster-ne.toml")
    first = outgoing(convert_export(FIXTURES / "lancaster_ne_shape.csv", mapping).events)
    again = outgoing(convert_export(FIXTURES / "lancaster_ne_shape.csv", mapping).events)
    assert first == again
    lines = (FIXTURES / "lancaster_ne_shape.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    overlap = tmp_path / "later-export.csv"
    overlap.write_text(lines[0] + "".join(lines[5:]) + lines[1].replace("26000101", "26000199"), encoding="utf-8")
    later = outgoing(convert_export(overlap, mapping).events)
    shared = {e.value for e in first} & {e.value for e in later}
    later_calls = {json.loads(e.value)["call_id"] for e in later}
    assert {e.value for e in first if e.key in later_calls} <= shared
    assert {e.key for e in later} - {e.key for e in first} == {"lancaster-ne:26000199"}
    assert all(decode_call_event(e.value).event_id.startswith(e.key + ":") for e in later)


# --------------------------------------------------------------------------------------------
# Mapping files and the command
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mapping", sorted(p.name for p in MAPPINGS.glob("*.toml")))
def test_every_shipped_mapping_loads(mapping: str) -> None:
    assert load_mapping(MAPPINGS / mapping).center_id


def test_an_export_without_the_mapped_columns_is_refused_naming_them(tmp_path: Path) -> None:
    export = tmp_path / "x.csv"
    export.write_text("incident_num,call_type\n1,EDP\n", encoding="utf-8")
    with pytest.raises(CadImportError) as excinfo:
        convert_export(export, load_mapping(MAPPINGS / "lancaster-ne.toml"))
    assert "Unit_Dispatch_Times" in str(excinfo.value) and "incident_date" in str(excinfo.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(("timezone = \"America/Chicago\"", "timezone = \"Mars/Olympus\""), "unknown time zone",
                     id="time-zone"),
        pytest.param(('"PHONE" = "resolved_by_phone"', '"PHONE" = "phoned"'), "close.disposition.map",
                     id="disposition"),
        pytest.param(('unit_id = "Unit"', 'unit_id = { column = "Unit", value = "X" }'), "units.columns.unit_id",
                     id="two-sources"),
        pytest.param(('received_at = { column = "Received", formats = ["%Y-%m-%d %H:%M:%S"] }',
                      'received_at = { column = "Received" }'), "'formats' is required", id="no-formats"),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_field(tmp_path: Path, change: tuple[str, str], problem: str) -> None:
    text = (MAPPINGS / "unit-rows-example.toml").read_text(encoding="utf-8")
    assert change[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(change[0], change[1]), encoding="utf-8")
    with pytest.raises(CadImportError) as excinfo:
        load_mapping(bad)
    assert "bad.toml is invalid" in str(excinfo.value) and problem in str(excinfo.value)


def test_command_writes_events_reports_rows_by_line_and_summarises(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = runner.invoke(app, ["import-cad", str(FIXTURES / "unit_rows_shape.csv"), "--mapping",
                                 str(MAPPINGS / "unit-rows-example.toml"), "--out", str(out)])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == {"rows": 10, "rows_rejected": 1, "calls": 6, "dispatches": 8, "arrivals": 6, "closes": 4,
                       "problems": 4, "center_id": "example-911", "events": 24, "out": str(out)}
    assert "line 9: disposition 'ODD-CODE'" in result.stderr
    events = [decode_call_event(line) for line in out.read_bytes().splitlines()]
    assert len(events) == 24
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)


def test_strict_writes_nothing_when_a_row_is_bad(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = runner.invoke(app, ["import-cad", str(FIXTURES / "unit_rows_shape.csv"), "--mapping",
                                 str(MAPPINGS / "unit-rows-example.toml"), "--out", str(out), "--strict"])

    assert result.exit_code == 1
    assert not out.exists()
    assert "4 problem(s): nothing written or published" in result.stderr


def test_command_needs_exactly_one_destination() -> None:
    result = runner.invoke(app, ["import-cad", str(FIXTURES / "unit_rows_shape.csv"), "--mapping",
                                 str(MAPPINGS / "unit-rows-example.toml")])
    assert result.exit_code == 2
    assert "exactly one of --out FILE or --publish" in result.stderr


def test_times_are_utc_in_events_and_keep_their_instant() -> None:
    events = imported("nyc_fdny_ems_shape.csv", "nyc-fdny-ems.toml").events
    received = next(e for e in events if e.call_id == "nyc-fdny-ems:260010001")
    assert received.occurred_at.tzinfo == UTC
    # 5,400 s after midnight of 2026-03-08, still EST (-05:00) at 01:30.
    assert received.occurred_at == datetime(2026, 3, 8, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    assert received.occurred_at - timedelta(hours=6, minutes=30) == datetime(2026, 3, 8, tzinfo=UTC)
