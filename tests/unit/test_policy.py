"""Unit tests for loading and validating triage policies (domain/policy.py)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.policy import DEFAULT_POLICY_PATH, SAFETY_FLAGS, OpeningHours, Policy, PolicyError, load_policy
from domain.triage import triage
from schemas.calls import CallReceived
from schemas.sla import Response
from schemas.triage import Route

DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected exactly one {old!r} in the default policy"
    return text.replace(old, new)


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "city.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


# --------------------------------------------------------------------------------------------
# The shipped default
# --------------------------------------------------------------------------------------------


def test_default_policy_loads() -> None:
    policy = load_policy()

    assert policy.name == "default"
    assert policy.version
    assert policy.timezone == "America/Chicago"
    assert set(policy.emergency_flags) | set(policy.co_responder_flags) == set(SAFETY_FLAGS)
    assert policy.co_responder_flags == {"caller_requests_police"}
    assert policy.second_response_on_emergency is True
    assert policy.third_party_caller_needs_on_scene is True
    assert policy.fallback(Route.DIVERSION_LINE) is Route.CO_RESPONDER
    assert policy.fallback(Route.CO_RESPONDER) is Route.EMERGENCY
    assert policy.routes["diversion_line"].opening_hours.always_open
    assert policy.routes["co_responder"].opening_hours.always_open
    assert set(policy.sla) == set(Response)
    for sla in policy.sla.values():
        assert timedelta(0) < sla.warning_after < sla.breach_after


def test_default_policy_loaded_by_path_equals_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRISIS_POLICY", raising=False)

    assert load_policy(DEFAULT_POLICY_PATH) == load_policy()
    assert load_policy(str(DEFAULT_POLICY_PATH)) == load_policy()


def test_default_policy_is_always_open() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    for hour in range(24):
        at = datetime(2026, 11, 2, hour, 30, tzinfo=UTC)
        assert policy.is_open(Route.DIVERSION_LINE, at)
        assert policy.is_open(Route.CO_RESPONDER, at)
        assert policy.is_open(Route.EMERGENCY, at)


# --------------------------------------------------------------------------------------------
# CRISIS_POLICY
# --------------------------------------------------------------------------------------------


def test_crisis_policy_env_var_is_honoured(
    monkeypatch: pytest.MonkeyPatch, write_policy: Callable[[str], Path]
) -> None:
    path = write_policy(replace_once(DEFAULT_TEXT, 'name = "default"', 'name = "houston"'))
    monkeypatch.setenv("CRISIS_POLICY", str(path))

    assert load_policy().name == "houston"


def test_explicit_path_wins_over_env_var(monkeypatch: pytest.MonkeyPatch, write_policy: Callable[[str], Path]) -> None:
    path = write_policy(replace_once(DEFAULT_TEXT, 'name = "default"', 'name = "houston"'))
    monkeypatch.setenv("CRISIS_POLICY", str(path))

    assert load_policy(DEFAULT_POLICY_PATH).name == "default"


def test_crisis_policy_env_var_pointing_nowhere_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    monkeypatch.setenv("CRISIS_POLICY", str(missing))

    with pytest.raises(PolicyError, match=re.escape(str(missing))):
        load_policy()


def test_empty_env_var_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRISIS_POLICY", "")

    assert load_policy().name == "default"


# --------------------------------------------------------------------------------------------
# Policies that cannot be used
# --------------------------------------------------------------------------------------------


def test_missing_file_raises_policy_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"

    with pytest.raises(PolicyError) as excinfo:
        load_policy(missing)

    message = str(excinfo.value)
    assert str(missing) in message
    assert "not found" in message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('name = "default"\nname = "twice"\n', id="duplicate-key"),
        pytest.param("name = \n", id="missing-value"),
        pytest.param("[routes\n", id="unclosed-table"),
        pytest.param('timezone = "UTC"\n' + DEFAULT_TEXT, id="default-with-duplicate-key"),
    ],
)
def test_invalid_toml_raises_policy_error(write_policy: Callable[[str], Path], text: str) -> None:
    path = write_policy(text)

    with pytest.raises(PolicyError) as excinfo:
        load_policy(path)

    message = str(excinfo.value)
    assert str(path) in message
    assert "not valid TOML" in message


def test_file_that_is_not_utf8_raises_policy_error(tmp_path: Path) -> None:
    # TOML files must be UTF-8; a Latin-1 file (e.g. saved by a Windows editor) is invalid TOML.
    path = tmp_path / "latin1.toml"
    path.write_bytes(DEFAULT_TEXT.replace('name = "default"', 'name = "Montréal"').encode("latin-1"))

    with pytest.raises(PolicyError) as excinfo:
        load_policy(path)

    assert str(path) in str(excinfo.value)


def test_directory_instead_of_file_raises_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as excinfo:
        load_policy(tmp_path)

    assert str(tmp_path) in str(excinfo.value)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        pytest.param(
            'timezone = "America/Chicago"',
            'timezone = "America/Springfield"',
            r"timezone: .*unknown time zone 'America/Springfield'",
            id="unknown-time-zone",
        ),
        pytest.param(
            'timezone = "America/Chicago"',
            'timezone = "CST"',
            r"timezone: .*unknown time zone 'CST'",
            id="abbreviation-is-not-a-time-zone",
        ),
        pytest.param(
            'timezone = "America/Chicago"',
            'timezone = ""',
            r"timezone: .*unknown time zone ''",
            id="empty-time-zone",
        ),
        pytest.param(
            'fallback = "emergency"',
            'fallback = "diversion_line"',
            r"routes\.co_responder\.fallback must be a route after co_responder",
            id="co-responder-falls-back-to-diversion-line",
        ),
        pytest.param(
            'fallback = "co_responder"',
            'fallback = "diversion_line"',
            r"routes\.diversion_line\.fallback must be a route after diversion_line",
            id="diversion-line-falls-back-to-itself",
        ),
        pytest.param(
            'fallback = "emergency"',
            'fallback = "co_responder"',
            r"routes\.co_responder\.fallback must be a route after co_responder",
            id="co-responder-falls-back-to-itself",
        ),
        pytest.param(
            'fallback = "emergency"',
            'fallback = "sheriff"',
            r"routes\.co_responder\.fallback",
            id="unknown-fallback-route",
        ),
        pytest.param(
            "warning_after_seconds = 900",
            "warning_after_seconds = 1200",
            r"sla\.first: .*warning_after_seconds must be smaller than breach_after_seconds",
            id="warning-equals-breach",
        ),
        pytest.param(
            "warning_after_seconds = 600",
            "warning_after_seconds = 1000",
            r"sla\.second: .*warning_after_seconds must be smaller than breach_after_seconds",
            id="warning-after-breach",
        ),
        pytest.param(
            "warning_after_seconds = 900",
            "warning_after_seconds = 0",
            r"sla\.first\.warning_after_seconds",
            id="warning-zero",
        ),
        pytest.param(
            '"weapon_present", "violence_or_threat_to_others"',
            '"weapon", "violence_or_threat_to_others"',
            r"emergency_flags\.\d+: Input should be 'weapon_present'",
            id="unknown-emergency-flag",
        ),
        pytest.param(
            'co_responder_flags = ["caller_requests_police"]',
            'co_responder_flags = ["caller_wants_police"]',
            r"co_responder_flags\.\d+: Input should be 'weapon_present'",
            id="unknown-co-responder-flag",
        ),
        pytest.param(
            'co_responder_flags = ["caller_requests_police"]',
            'co_responder_flags = ["caller_requests_police", "weapon_present"]',
            r"flags listed both as emergency and co-responder flags: \['weapon_present'\]",
            id="flag-both-emergency-and-co-responder",
        ),
        pytest.param(
            'on_scene_concerns = ["welfare_check"]',
            'on_scene_concerns = ["loitering"]',
            r"on_scene_concerns\.\d+: Input should be 'mental_health'",
            id="unknown-concern",
        ),
        pytest.param(
            'hours = "00:00-24:00"\nfallback = "co_responder"',
            'hours = "6am-10pm"\nfallback = "co_responder"',
            r"routes\.diversion_line\.hours: .*hours must look like '06:00-22:00'.*got '6am-10pm'",
            id="hours-in-words",
        ),
        pytest.param(
            'hours = "00:00-24:00"\nfallback = "co_responder"',
            'hours = "06:00"\nfallback = "co_responder"',
            r"routes\.diversion_line\.hours: .*got '06:00'",
            id="hours-without-end",
        ),
        pytest.param(
            'hours = "00:00-24:00"\nfallback = "co_responder"',
            'hours = "06:00-22:00-23:00"\nfallback = "co_responder"',
            r"routes\.diversion_line\.hours: .*got '06:00-22:00-23:00'",
            id="hours-with-three-parts",
        ),
        pytest.param(
            'hours = "00:00-24:00"\nfallback = "emergency"',
            'hours = "25:00-06:00"\nfallback = "emergency"',
            r"routes\.co_responder\.hours: .*got '25:00-06:00'",
            id="hours-out-of-range",
        ),
        pytest.param(
            'hours = "00:00-24:00"\nfallback = "emergency"',
            'hours = "24:00-06:00"\nfallback = "emergency"',
            r"routes\.co_responder\.hours: .*got '24:00-06:00'",
            id="hours-start-24",
        ),
        pytest.param(
            'hours = "00:00-24:00"\nfallback = "co_responder"',
            'hours = "06:00Z-22:00"\nfallback = "co_responder"',
            r"routes\.diversion_line\.hours",
            id="hours-with-utc-offset",
        ),
        pytest.param(
            'hours = "00:00-24:00"\nfallback = "co_responder"',
            'hours = "06:00+01:00-22:00"\nfallback = "co_responder"',
            r"routes\.diversion_line\.hours",
            id="hours-with-numeric-offset",
        ),
        pytest.param(
            'name = "default"',
            'name = ""',
            r"name",
            id="empty-name",
        ),
        pytest.param(
            'name = "default"',
            'name = "default"\nnickname = "stl"',
            r"nickname: .*Extra inputs are not permitted",
            id="unknown-key",
        ),
        pytest.param(
            "[sla.second]\nwarning_after_seconds = 600\nbreach_after_seconds = 900\n",
            "",
            r"sla must configure both 'first' and 'second' responses",
            id="missing-second-sla",
        ),
    ],
)
def test_invalid_policy_raises_policy_error_naming_file_and_problem(
    write_policy: Callable[[str], Path], old: str, new: str, problem: str
) -> None:
    path = write_policy(replace_once(DEFAULT_TEXT, old, new))

    with pytest.raises(PolicyError) as excinfo:
        load_policy(path)

    message = str(excinfo.value)
    assert str(path) in message
    assert "is invalid" in message
    assert re.search(problem, message), message


def test_missing_route_section_is_reported(write_policy: Callable[[str], Path]) -> None:
    data_text = replace_once(DEFAULT_TEXT, '[routes.co_responder]\nhours = "00:00-24:00"\nfallback = "emergency"\n', "")
    path = write_policy(data_text)

    with pytest.raises(PolicyError, match=r"routes must configure both 'diversion_line' and 'co_responder'"):
        load_policy(path)


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


def test_accepted_hours_never_crash_triage(write_policy: Callable[[str], Path]) -> None:
    """Whatever hours text a policy accepts must be usable when a call arrives."""
    for hours in ["06:00-22:00", "22:00-06:00", "00:00-24:00", "06:30:15-21:45", "06:00Z-22:00"]:
        text = replace_once(
            DEFAULT_TEXT,
            'hours = "00:00-24:00"\nfallback = "co_responder"',
            f'hours = "{hours}"\nfallback = "co_responder"',
        )
        try:
            policy = load_policy(write_policy(text))
        except PolicyError:
            continue  # rejected at load time: fine
        call = CallReceived(
            event_id="evt-1",
            call_id="call-1",
            occurred_at=datetime(2026, 11, 2, 15, 0, tzinfo=UTC),
            center_id="hou-911",
            nature_code="MENTAL",
            concerns=["mental_health"],
            person_in_crisis_is_caller=True,
            district="district-1",
        )
        assert triage(call, policy).route in set(Route), hours


# --------------------------------------------------------------------------------------------
# OpeningHours
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "at", "expected"),
    [
        pytest.param("06:00-22:00", time(5, 59, 59), False, id="day-before-open"),
        pytest.param("06:00-22:00", time(6, 0), True, id="day-at-open"),
        pytest.param("06:00-22:00", time(12, 0), True, id="day-midday"),
        pytest.param("06:00-22:00", time(21, 59, 59), True, id="day-just-before-close"),
        pytest.param("06:00-22:00", time(22, 0), False, id="day-at-close"),
        pytest.param("06:00-22:00", time(0, 0), False, id="day-midnight"),
        pytest.param("22:00-06:00", time(21, 59), False, id="overnight-before-open"),
        pytest.param("22:00-06:00", time(22, 0), True, id="overnight-at-open"),
        pytest.param("22:00-06:00", time(23, 59, 59), True, id="overnight-before-midnight"),
        pytest.param("22:00-06:00", time(0, 0), True, id="overnight-midnight"),
        pytest.param("22:00-06:00", time(5, 59), True, id="overnight-before-close"),
        pytest.param("22:00-06:00", time(6, 0), False, id="overnight-at-close"),
        pytest.param("22:00-06:00", time(12, 0), False, id="overnight-midday"),
        pytest.param("00:00-24:00", time(0, 0), True, id="24h-midnight"),
        pytest.param("00:00-24:00", time(12, 0), True, id="24h-midday"),
        pytest.param("00:00-24:00", time(23, 59, 59, 999999), True, id="24h-last-instant"),
        pytest.param("18:00-24:00", time(17, 59), False, id="until-midnight-before-open"),
        pytest.param("18:00-24:00", time(18, 0), True, id="until-midnight-at-open"),
        pytest.param("18:00-24:00", time(23, 59), True, id="until-midnight-late"),
        pytest.param("18:00-24:00", time(0, 0), False, id="until-midnight-after-midnight"),
        pytest.param(" 06:00 - 22:00 ", time(6, 0), True, id="spaces-around-parts"),
    ],
)
def test_opening_hours_is_open(text: str, at: time, expected: bool) -> None:
    assert OpeningHours.parse(text).is_open(at) is expected


@pytest.mark.parametrize(
    ("text", "always_open"),
    [
        pytest.param("00:00-24:00", True, id="24h"),
        pytest.param("06:00-22:00", False, id="day"),
        pytest.param("22:00-06:00", False, id="overnight"),
        pytest.param("18:00-24:00", False, id="until-midnight"),
    ],
)
def test_opening_hours_always_open(text: str, always_open: bool) -> None:
    assert OpeningHours.parse(text).always_open is always_open


def test_opening_hours_parse_values() -> None:
    assert OpeningHours.parse("06:00-22:00") == OpeningHours(time(6), time(22))
    assert OpeningHours.parse("00:00-24:00") == OpeningHours(time(0), None)


@pytest.mark.parametrize("text", ["", "06:00", "6am-10pm", "06:00-22:00-23:00", "25:00-06:00", "24:00-06:00"])
def test_opening_hours_parse_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="hours must look like"):
        OpeningHours.parse(text)


def test_policy_is_open_uses_the_policy_time_zone() -> None:
    data: dict[str, Any] = tomllib.loads(DEFAULT_TEXT)
    data["routes"]["diversion_line"]["hours"] = "06:00-22:00"
    policy = Policy.model_validate(data)

    # 03:00 UTC on 3 Nov 2026 is 21:00 on 2 Nov in Chicago (CST, UTC-6): open.
    assert policy.is_open(Route.DIVERSION_LINE, datetime(2026, 11, 3, 3, 0, tzinfo=UTC))
    # 05:00 UTC is 23:00 in Chicago: closed.
    assert not policy.is_open(Route.DIVERSION_LINE, datetime(2026, 11, 3, 5, 0, tzinfo=UTC))
    # In summer (CDT, UTC-5) 03:30 UTC is 22:30 local: closed.
    assert not policy.is_open(Route.DIVERSION_LINE, datetime(2026, 7, 1, 3, 30, tzinfo=UTC))
    assert policy.is_open(Route.EMERGENCY, datetime(2026, 11, 3, 5, 0, tzinfo=UTC))
