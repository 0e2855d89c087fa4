"""`crisis triage --unmapped-codes FILE` and the what-if over a changed nature-code mapping."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from crisis.cli import app
from domain.policy import DEFAULT_POLICY_PATH

runner = CliRunner()


def lines(*events: dict) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def nyc_call(factory, call_id: str, code: str) -> dict:
    return factory(call_id=call_id, center_id="nyc-fdny-ems", nature_code=code, mpds_code=None, concerns=[],
                   person_in_crisis_is_caller=True)


def test_unmapped_codes_are_listed_per_center_most_frequent_first(call_received_factory, tmp_path: Path):
    past = tmp_path / "past.jsonl"
    past.write_text(lines(
        nyc_call(call_received_factory, "nyc-fdny-ems:1", "EDPM"),
        nyc_call(call_received_factory, "nyc-fdny-ems:2", "NEWCODE"),
        nyc_call(call_received_factory, "nyc-fdny-ems:3", "NEWCODE"),
        nyc_call(call_received_factory, "nyc-fdny-ems:4", "OTHERNEW"),
        call_received_factory(call_id="x:5", center_id="x", nature_code="MNTL", mpds_code=None),
    ))
    report = tmp_path / "unmapped.csv"

    result = runner.invoke(app, ["triage", "--input", str(past), "--unmapped-codes", str(report)])

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 5, "every call is still triaged"
    with report.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [
        {"center_id": "nyc-fdny-ems", "field": "nature_code", "code": "NEWCODE", "calls": "2"},
        {"center_id": "nyc-fdny-ems", "field": "nature_code", "code": "OTHERNEW", "calls": "1"},
    ]
    assert "2 distinct unmapped code(s), seen 3 time(s)" in result.stderr


def test_what_if_shows_the_calls_a_new_mapping_moves(call_received_factory, tmp_path: Path):
    past = tmp_path / "past.jsonl"
    past.write_text(lines(
        nyc_call(call_received_factory, "nyc-fdny-ems:1", "NEWCODE"),
        nyc_call(call_received_factory, "nyc-fdny-ems:2", "NEWCODE"),
        nyc_call(call_received_factory, "nyc-fdny-ems:3", "SICK"),
    ))
    candidate = tmp_path / "candidate.toml"
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace('version = "2026.11.1"', 'version = "next"', 1)
    candidate.write_text(text.replace(
        'codes."T-EDP" = { concerns = ["mental_health"] }',
        'codes."T-EDP" = { concerns = ["mental_health"] }\ncodes.NEWCODE = { concerns = ["mental_health"] }'))
    report = tmp_path / "still-unmapped.csv"

    result = runner.invoke(app, ["triage", "--policy", str(candidate), "--input", str(past), "--show-changes",
                                 "--unmapped-codes", str(report)])

    assert result.exit_code == 0, result.output
    out = result.stdout
    summary = json.loads(out[out.index("{\n"):])
    assert summary["calls"] == 3 and summary["changed"] == 2
    assert {"from": "emergency", "to": "diversion_line", "calls": 2} in summary["by_route"]
    changed = [json.loads(line) for line in out[:out.index("{\n")].splitlines()]
    assert {c["call_id"] for c in changed} == {"nyc-fdny-ems:1", "nyc-fdny-ems:2"}
    assert all("nature_code:NEWCODE -> mental_health" in c["reasons"] for c in changed)
    assert report.read_text(encoding="utf-8").splitlines() == ["center_id,field,code,calls"]
