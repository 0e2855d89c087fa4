"""`crisis triage`: the rule engine from a shell, and the what-if report for a candidate policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from typer.testing import CliRunner

from crisis.cli import app
from crisis.services import REPO_ROOT

runner = CliRunner()
CANDIDATE = REPO_ROOT / "examples" / "policy-houston-hours.toml"


def lines(*events: dict) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def test_each_line_gets_a_decision_with_reasons_and_policy_version(call_received_factory):
    result = runner.invoke(app, ["triage"], input=lines(
        call_received_factory(call_id="a"), call_received_factory(call_id="b", weapon_present=True)))
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {"call_id": "a", "route": "diversion_line", "reasons": ["no_safety_flags_phone_resolvable"],
                     "second_response_requested": False, "policy_name": "default", "policy_version": "2026.11.1"}
    assert second["route"] == "emergency" and "weapon_present" in second["reasons"]


def test_invalid_line_is_reported_with_its_number_and_a_non_zero_exit(call_received_factory):
    result = runner.invoke(app, ["triage"], input=lines(call_received_factory()) + "{broken\n")
    assert result.exit_code == 1
    assert "line 2: invalid event" in result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_what_if_counts_calls_changing_route_by_old_and_new_route(call_received_factory, tmp_path):
    night = datetime(2026, 11, 3, 5, 0, tzinfo=UTC).isoformat()  # 23:00 in Chicago: Houston's line is closed
    day = datetime(2026, 11, 2, 16, 0, tzinfo=UTC).isoformat()
    past = tmp_path / "calls.jsonl"
    past.write_text(lines(
        call_received_factory(call_id="n1", occurred_at=night),
        call_received_factory(call_id="n2", occurred_at=night),
        call_received_factory(call_id="d1", occurred_at=day),
        call_received_factory(call_id="w1", occurred_at=night, weapon_present=True),
        {"type": "call.closed", "event_id": "x", "call_id": "d1", "occurred_at": day, "disposition": "safety_plan"},
    ))
    result = runner.invoke(app, ["triage", "--policy", str(CANDIDATE), "--input", str(past), "--show-changes"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    report = json.loads(out[out.index("{\n"):])
    assert report["calls"] == 4 and report["changed"] == 2
    assert {"from": "diversion_line", "to": "co_responder", "calls": 2} in report["by_route"]
    assert {"from": "emergency", "to": "emergency", "calls": 1} in report["by_route"]
    changed = [json.loads(line) for line in out[:out.index("{\n")].splitlines()]
    assert {c["call_id"] for c in changed} == {"n1", "n2"}
    assert all("diversion_line_closed" in c["reasons"] for c in changed)


def test_a_broken_policy_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    result = runner.invoke(app, ["triage", "--policy", str(bad)], input="")
    assert result.exit_code == 2
    assert "bad.toml is invalid" in result.stderr
