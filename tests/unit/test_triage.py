"""Unit tests for the triage rules (domain/triage.py) under the shipped and modified policies.

Each table row names the published criterion it checks (see /work/shared/domain.md and the
comments in domain/policies/default.toml).
"""

from __future__ import annotations

import copy
import json
import tomllib
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.policy import DEFAULT_POLICY_PATH, SAFETY_FLAGS, Policy, load_policy
from domain.triage import Triage, decide, deterministic_id, triage
from schemas.calls import CallReceived, Concern, decode_call_event
from schemas.triage import Route, TriageDecision

CHICAGO = ZoneInfo("America/Chicago")
DEFAULT_POLICY = load_policy(DEFAULT_POLICY_PATH)
EMERGENCY_FLAGS = (
    "weapon_present",
    "violence_or_threat_to_others",
    "crime_in_progress",
    "medical_emergency",
    "imminent_risk_to_self",
)
BEHAVIORAL_CONCERNS_WITHOUT_ON_SCENE = sorted(
    DEFAULT_POLICY.behavioral_health_concerns - DEFAULT_POLICY.on_scene_concerns
)
PSEUDONYM_KEY = b"k"


def default_policy_data() -> dict[str, Any]:
    """The shipped default policy as plain data, to be modified per test."""
    return tomllib.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))


def policy_with_hours(
    diversion_hours: str = "00:00-24:00",
    co_responder_hours: str = "00:00-24:00",
    timezone: str = "America/Chicago",
) -> Policy:
    data = copy.deepcopy(default_policy_data())
    data["name"] = "restricted-hours"
    data["timezone"] = timezone
    data["routes"]["diversion_line"]["hours"] = diversion_hours
    data["routes"]["co_responder"]["hours"] = co_responder_hours
    return Policy.model_validate(data)


HOUSTON_HOURS_POLICY = policy_with_hours(diversion_hours="06:00-22:00")
OVERNIGHT_HOURS_POLICY = policy_with_hours(diversion_hours="22:00-06:00")
BOTH_RESTRICTED_POLICY = policy_with_hours(diversion_hours="06:00-22:00", co_responder_hours="08:00-20:00")


def make_call(**overrides: Any) -> CallReceived:
    """A valid behavioral-health call with no flags where the person in crisis is the caller."""
    body: dict[str, Any] = {
        "type": "call.received",
        "event_id": "evt-1",
        "call_id": "call-1",
        "occurred_at": datetime(2026, 11, 2, 15, 0, tzinfo=UTC).isoformat(),
        "center_id": "stl-911",
        "nature_code": "MENTAL",
        # No determinant: an MPDS code adds its own concerns and flags (tested in test_nature_codes.py).
        "mpds_code": None,
        "concerns": ["mental_health"],
        "person_in_crisis_is_caller": True,
        "juvenile": False,
        "district": "district-1",
        "caller_phone": "+1 (314) 555-0100",
    }
    body.update(overrides)
    if isinstance(body["occurred_at"], datetime):
        body["occurred_at"] = body["occurred_at"].isoformat()
    event = decode_call_event(json.dumps(body))
    assert isinstance(event, CallReceived)
    return event


def at_chicago(hour: int, minute: int = 0) -> datetime:
    """An aware instant at the given Chicago wall-clock time (a November weekday)."""
    return datetime(2026, 11, 2, hour, minute, tzinfo=CHICAGO)


# --------------------------------------------------------------------------------------------
# Published criteria, default policy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag",
    [
        pytest.param("weapon_present", id="weapon-stl-houston-austin"),
        pytest.param("violence_or_threat_to_others", id="violence-or-threat-to-others-stl-houston"),
        pytest.param("crime_in_progress", id="crime-in-progress-cahoots-austin"),
        pytest.param("medical_emergency", id="medical-emergency-houston-cahoots"),
        pytest.param("imminent_risk_to_self", id="imminent-risk-to-self-austin"),
    ],
)
def test_emergency_flag_on_behavioral_call_sends_emergency_with_second_response(flag: str) -> None:
    result = triage(make_call(**{flag: True}), DEFAULT_POLICY)

    assert result.route is Route.EMERGENCY
    assert flag in result.reasons
    assert result.second_response_requested is True
    assert "co_responder_second_response" in result.reasons


@pytest.mark.parametrize(
    "flag",
    [pytest.param(flag, id=flag) for flag in EMERGENCY_FLAGS],
)
@pytest.mark.parametrize(
    "caller_overrides",
    [
        pytest.param({"person_in_crisis_is_caller": True}, id="self-caller"),
        pytest.param({"person_in_crisis_is_caller": False}, id="third-party-caller"),
        pytest.param({"concerns": ["welfare_check"]}, id="welfare-check"),
        pytest.param({"juvenile": True}, id="juvenile"),
        pytest.param({"caller_requests_police": True}, id="also-requests-police"),
    ],
)
def test_emergency_flag_wins_over_everything_else(flag: str, caller_overrides: dict[str, Any]) -> None:
    result = triage(make_call(**{flag: True, **caller_overrides}), DEFAULT_POLICY)

    assert result.route is Route.EMERGENCY
    assert flag in result.reasons
    assert result.second_response_requested is True


def test_weapon_reason_code_is_weapon_present() -> None:
    result = triage(make_call(weapon_present=True), DEFAULT_POLICY)

    assert result.route is Route.EMERGENCY
    assert result.reasons == ("weapon_present", "co_responder_second_response")


def test_every_emergency_flag_becomes_a_reason() -> None:
    result = triage(make_call(**dict.fromkeys(EMERGENCY_FLAGS, True)), DEFAULT_POLICY)

    assert result.route is Route.EMERGENCY
    assert set(EMERGENCY_FLAGS) <= set(result.reasons)
    assert result.reasons[-1] == "co_responder_second_response"


@pytest.mark.parametrize(
    ("overrides", "route", "reasons"),
    [
        pytest.param(
            {"caller_requests_police": True},
            Route.CO_RESPONDER,
            ("caller_requests_police", "needs_on_scene_support"),
            id="caller-requests-police-austin",
        ),
        pytest.param(
            {},
            Route.DIVERSION_LINE,
            ("no_safety_flags_phone_resolvable",),
            id="self-caller-no-flags-stl-houston",
        ),
        pytest.param(
            {"juvenile": True},
            Route.DIVERSION_LINE,
            ("no_safety_flags_phone_resolvable",),
            id="juvenile-no-flags-stl-juveniles-eligible",
        ),
        pytest.param(
            {"concerns": ["substance_use", "trauma"]},
            Route.DIVERSION_LINE,
            ("no_safety_flags_phone_resolvable",),
            id="several-concerns-no-flags",
        ),
        pytest.param(
            {"person_in_crisis_is_caller": False},
            Route.CO_RESPONDER,
            ("third_party_caller_needs_on_scene", "needs_on_scene_support"),
            id="third-party-caller-needs-on-scene",
        ),
        pytest.param(
            {"concerns": ["welfare_check"]},
            Route.CO_RESPONDER,
            ("welfare_check_needs_on_scene", "needs_on_scene_support"),
            id="welfare-check-needs-on-scene",
        ),
        pytest.param(
            {"concerns": ["mental_health", "welfare_check"], "person_in_crisis_is_caller": False},
            Route.CO_RESPONDER,
            ("welfare_check_needs_on_scene", "third_party_caller_needs_on_scene", "needs_on_scene_support"),
            id="welfare-check-by-third-party",
        ),
        pytest.param(
            {"caller_requests_police": True, "person_in_crisis_is_caller": False},
            Route.CO_RESPONDER,
            ("caller_requests_police", "third_party_caller_needs_on_scene", "needs_on_scene_support"),
            id="third-party-caller-requests-police",
        ),
    ],
)
def test_behavioral_call_without_emergency_flags(
    overrides: dict[str, Any], route: Route, reasons: tuple[str, ...]
) -> None:
    result = triage(make_call(**overrides), DEFAULT_POLICY)

    assert result == Triage(route=route, reasons=reasons, second_response_requested=False)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="no-flags"),
        pytest.param({"person_in_crisis_is_caller": False}, id="third-party"),
        pytest.param({"weapon_present": True}, id="weapon"),
        pytest.param({"medical_emergency": True}, id="medical-emergency"),
        pytest.param({"caller_requests_police": True}, id="requests-police"),
    ],
)
def test_no_behavioral_health_concern_is_ordinary_dispatch(overrides: dict[str, Any]) -> None:
    result = triage(make_call(concerns=[], **overrides), DEFAULT_POLICY)

    assert result.route is Route.EMERGENCY
    assert result.reasons[0] == "no_behavioral_health_concern"
    assert result.second_response_requested is False
    assert "co_responder_second_response" not in result.reasons
    for flag, value in overrides.items():
        if flag in SAFETY_FLAGS and value:
            assert flag in result.reasons


def test_no_behavioral_health_concern_reasons_exactly() -> None:
    result = triage(make_call(concerns=[]), DEFAULT_POLICY)

    assert result == Triage(
        route=Route.EMERGENCY, reasons=("no_behavioral_health_concern",), second_response_requested=False
    )


@pytest.mark.parametrize("concern", [pytest.param(c, id=c.value) for c in Concern])
def test_every_default_concern_is_behavioral(concern: Concern) -> None:
    result = triage(make_call(concerns=[concern.value]), DEFAULT_POLICY)

    assert "no_behavioral_health_concern" not in result.reasons
    expected = Route.CO_RESPONDER if concern in DEFAULT_POLICY.on_scene_concerns else Route.DIVERSION_LINE
    assert result.route is expected


def test_second_response_can_be_switched_off_by_policy() -> None:
    data = default_policy_data()
    data["second_response_on_emergency"] = False
    policy = Policy.model_validate(data)

    result = triage(make_call(weapon_present=True), policy)

    assert result.route is Route.EMERGENCY
    assert result.second_response_requested is False
    assert "co_responder_second_response" not in result.reasons


def test_third_party_rule_can_be_switched_off_by_policy() -> None:
    data = default_policy_data()
    data["third_party_caller_needs_on_scene"] = False
    policy = Policy.model_validate(data)

    result = triage(make_call(person_in_crisis_is_caller=False), policy)

    assert result.route is Route.DIVERSION_LINE
    assert result.reasons == ("no_safety_flags_phone_resolvable",)


# --------------------------------------------------------------------------------------------
# Operating hours (Houston: diversion line 06:00-22:00, America/Chicago)
# --------------------------------------------------------------------------------------------


def test_diversion_line_closed_at_night_falls_back_to_co_responder() -> None:
    result = triage(make_call(occurred_at=at_chicago(23, 30)), HOUSTON_HOURS_POLICY)

    assert result.route is Route.CO_RESPONDER
    assert result.reasons == ("no_safety_flags_phone_resolvable", "diversion_line_closed")
    assert result.second_response_requested is False


def test_diversion_line_open_during_the_day() -> None:
    result = triage(make_call(occurred_at=at_chicago(10, 0)), HOUSTON_HOURS_POLICY)

    assert result.route is Route.DIVERSION_LINE
    assert result.reasons == ("no_safety_flags_phone_resolvable",)


def test_hours_are_read_in_the_policy_time_zone_not_utc() -> None:
    # 23:30 in Chicago is 05:30 UTC the next day (CST, UTC-6): closed although UTC says early morning.
    occurred = at_chicago(23, 30).astimezone(UTC)
    assert occurred.hour == 5

    result = triage(make_call(occurred_at=occurred), HOUSTON_HOURS_POLICY)

    assert result.route is Route.CO_RESPONDER
    assert "diversion_line_closed" in result.reasons


@pytest.mark.parametrize(
    ("policy", "hour", "minute", "open_"),
    [
        pytest.param(HOUSTON_HOURS_POLICY, 5, 59, False, id="day-hours-05:59-closed"),
        pytest.param(HOUSTON_HOURS_POLICY, 6, 0, True, id="day-hours-06:00-open"),
        pytest.param(HOUSTON_HOURS_POLICY, 21, 59, True, id="day-hours-21:59-open"),
        pytest.param(HOUSTON_HOURS_POLICY, 22, 0, False, id="day-hours-22:00-closed"),
        pytest.param(HOUSTON_HOURS_POLICY, 0, 0, False, id="day-hours-midnight-closed"),
        pytest.param(OVERNIGHT_HOURS_POLICY, 23, 30, True, id="overnight-23:30-open"),
        pytest.param(OVERNIGHT_HOURS_POLICY, 0, 0, True, id="overnight-midnight-open"),
        pytest.param(OVERNIGHT_HOURS_POLICY, 5, 59, True, id="overnight-05:59-open"),
        pytest.param(OVERNIGHT_HOURS_POLICY, 6, 0, False, id="overnight-06:00-closed"),
        pytest.param(OVERNIGHT_HOURS_POLICY, 10, 0, False, id="overnight-10:00-closed"),
        pytest.param(OVERNIGHT_HOURS_POLICY, 21, 59, False, id="overnight-21:59-closed"),
        pytest.param(OVERNIGHT_HOURS_POLICY, 22, 0, True, id="overnight-22:00-open"),
        pytest.param(DEFAULT_POLICY, 3, 0, True, id="default-24h-03:00-open"),
        pytest.param(DEFAULT_POLICY, 23, 59, True, id="default-24h-23:59-open"),
    ],
)
def test_diversion_line_hours(policy: Policy, hour: int, minute: int, open_: bool) -> None:
    result = triage(make_call(occurred_at=at_chicago(hour, minute)), policy)

    if open_:
        assert result.route is Route.DIVERSION_LINE
        assert "diversion_line_closed" not in result.reasons
    else:
        assert result.route is Route.CO_RESPONDER
        assert result.reasons[-1] == "diversion_line_closed"


def test_both_closed_falls_back_to_emergency_without_second_response() -> None:
    result = triage(make_call(occurred_at=at_chicago(23, 30)), BOTH_RESTRICTED_POLICY)

    assert result.route is Route.EMERGENCY
    assert result.reasons == ("no_safety_flags_phone_resolvable", "diversion_line_closed", "co_responder_closed")
    # No emergency flag: police/EMS go because nobody else is on duty, not as a first response.
    assert result.second_response_requested is False


def test_co_responder_closed_sends_on_scene_call_to_emergency() -> None:
    result = triage(make_call(occurred_at=at_chicago(21, 0), person_in_crisis_is_caller=False), BOTH_RESTRICTED_POLICY)

    assert result.route is Route.EMERGENCY
    assert result.reasons == ("third_party_caller_needs_on_scene", "needs_on_scene_support", "co_responder_closed")


def test_closed_hours_never_touch_emergency_calls() -> None:
    result = triage(make_call(occurred_at=at_chicago(23, 30), weapon_present=True), BOTH_RESTRICTED_POLICY)

    assert result.route is Route.EMERGENCY
    assert result.reasons == ("weapon_present", "co_responder_second_response")
    assert result.second_response_requested is True


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

PROPERTY_POLICIES = [DEFAULT_POLICY, HOUSTON_HOURS_POLICY, OVERNIGHT_HOURS_POLICY, BOTH_RESTRICTED_POLICY]
ROUTES = set(Route)

phone_numbers = st.builds(
    lambda area, exchange, line: f"+1 ({area}) {exchange}-{line:04d}",
    st.integers(200, 999),
    st.integers(200, 999),
    st.integers(0, 9999),
)


@st.composite
def calls(draw: st.DrawFn) -> CallReceived:
    n = draw(st.integers(0, 99_999))
    flags = {flag: draw(st.booleans()) for flag in SAFETY_FLAGS}
    return CallReceived(
        event_id=f"evt-{n}",
        call_id=f"call-{n}",
        occurred_at=draw(
            st.datetimes(
                min_value=datetime(2020, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive; tz is UTC below
                max_value=datetime(2035, 12, 31),  # noqa: DTZ001
                timezones=st.just(UTC),
            )
        ),
        center_id=draw(st.sampled_from(["stl-911", "hou-911", "aus-911"])),
        nature_code=draw(st.sampled_from(["MENTAL", "SUICIDE", "WELFARE", "DISTURB"])),
        mpds_code=draw(st.sampled_from([None, "25-A-1", "25-B-6V", "41-D-1"])),
        concerns=draw(st.lists(st.sampled_from(list(Concern)), unique=True)),
        person_in_crisis_is_caller=draw(st.booleans()),
        juvenile=draw(st.booleans()),
        district=draw(st.sampled_from(["district-1", "district-2", "north"])),
        caller_phone=draw(st.none() | phone_numbers),
        **flags,
    )


policies = st.sampled_from(PROPERTY_POLICIES)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(call=calls(), policy=policies)
def test_every_call_gets_one_route_and_a_reason(call: CallReceived, policy: Policy) -> None:
    result = triage(call, policy)

    assert result.route in ROUTES
    assert isinstance(result.route, Route)
    assert len(result.reasons) >= 1
    assert all(isinstance(reason, str) and reason for reason in result.reasons)
    if result.second_response_requested:
        assert result.route is Route.EMERGENCY


@PROPERTY_SETTINGS
@given(call=calls(), policy=policies)
def test_triage_is_deterministic(call: CallReceived, policy: Policy) -> None:
    again = CallReceived.model_validate_json(call.model_dump_json())

    assert triage(call, policy) == triage(call, policy)
    assert triage(call, policy) == triage(again, policy)


@PROPERTY_SETTINGS
@given(call=calls(), policy=policies, flag=st.sampled_from(SAFETY_FLAGS))
def test_adding_a_safety_flag_never_moves_toward_the_diversion_line(
    call: CallReceived, policy: Policy, flag: str
) -> None:
    before = triage(call, policy)
    after = triage(call.model_copy(update={flag: True}), policy)

    assert after.route.rank >= before.route.rank
    if flag in policy.emergency_flags:
        assert after.route is Route.EMERGENCY
    else:
        assert after.route is not Route.DIVERSION_LINE


@PROPERTY_SETTINGS
@given(call=calls(), policy=policies)
def test_a_call_with_any_safety_flag_never_reaches_the_diversion_line(call: CallReceived, policy: Policy) -> None:
    if any(getattr(call, flag) for flag in SAFETY_FLAGS):
        assert triage(call, policy).route is not Route.DIVERSION_LINE


@PROPERTY_SETTINGS
@given(call=calls(), policy=policies)
def test_decision_records_policy_and_hides_the_phone_number(call: CallReceived, policy: Policy) -> None:
    decision = decide(call, policy, PSEUDONYM_KEY)
    again = decide(call, policy, PSEUDONYM_KEY)
    result = triage(call, policy)

    assert isinstance(decision, TriageDecision)
    assert decision.type == "triage.decided"
    assert decision.policy_name == policy.name
    assert decision.policy_version == policy.version
    assert decision.event_id == again.event_id
    assert decision.event_id == deterministic_id("triage.decided", call.event_id, policy.name, policy.version)
    assert decision.event_id != call.event_id
    assert decision == again
    assert decision.call_id == call.call_id
    assert decision.source_event_id == call.event_id
    assert (decision.route, decision.reasons, decision.second_response_requested) == (
        result.route,
        result.reasons,
        result.second_response_requested,
    )

    published = decision.model_dump_json()
    assert "caller_phone" not in published
    if call.caller_phone:
        digits = "".join(ch for ch in call.caller_phone if ch.isdigit())
        assert call.caller_phone not in published
        assert digits not in published
        assert decision.person_ref is not None
        assert decision.person_ref != digits
    else:
        assert decision.person_ref is None


def test_decision_event_id_changes_with_policy_version() -> None:
    call = make_call()
    data = default_policy_data()
    data["version"] = "2099.1.1"
    newer = Policy.model_validate(data)

    assert decide(call, DEFAULT_POLICY, PSEUDONYM_KEY).event_id != decide(call, newer, PSEUDONYM_KEY).event_id


def test_person_ref_links_calls_by_digits_and_depends_on_the_key() -> None:
    first = decide(make_call(caller_phone="+1 (314) 555-0100"), DEFAULT_POLICY, PSEUDONYM_KEY)
    second = decide(make_call(event_id="evt-2", caller_phone="+13145550100"), DEFAULT_POLICY, PSEUDONYM_KEY)
    other_key = decide(make_call(caller_phone="+13145550100"), DEFAULT_POLICY, b"another-key")

    assert first.person_ref == second.person_ref
    assert first.person_ref != other_key.person_ref


def test_decision_decided_at_is_the_call_time_and_aware() -> None:
    occurred = at_chicago(10, 0)
    decision = decide(make_call(occurred_at=occurred), DEFAULT_POLICY, PSEUDONYM_KEY)

    assert decision.decided_at == occurred
    assert decision.decided_at.tzinfo is not None
    assert decision.decided_at.astimezone(CHICAGO).time() == time(10, 0)
