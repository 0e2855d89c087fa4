"""Nature codes, MPDS determinants and APCO incident types in the policy, and what triage makes of them."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import apco
from domain.code_effects import CodeEffect, MappedFlag
from domain.mpds import Determinant, determinant_effect, parse_determinant
from domain.nature_codes import CenterCodes, CodeRef, NatureCodeSettings, normalise_code
from domain.policy import DEFAULT_POLICY_PATH, SAFETY_FLAGS, Policy, PolicyError, load_policy
from domain.triage import decide_explained, triage
from schemas.calls import CallReceived, Concern, Disposition, decode_call_event
from schemas.triage import Route

DEFAULT_POLICY = load_policy()


def policy_with_codes(**nature_codes: Any) -> Policy:
    data = tomllib.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    data["nature_codes"] = nature_codes
    return Policy.model_validate(data)


def call(**overrides: Any) -> CallReceived:
    """A call.received carrying only what a CAD has: a center, a nature code, a district."""
    body: dict[str, Any] = {
        "type": "call.received", "event_id": "e1", "call_id": "c1",
        "occurred_at": datetime(2026, 11, 2, 15, 0, tzinfo=UTC).isoformat(),
        "center_id": "lancaster-ne", "nature_code": "25B6V", "district": "d1",
    }
    body.update(overrides)
    event = decode_call_event(json.dumps(body))
    assert isinstance(event, CallReceived)
    return event


# --------------------------------------------------------------------------------------------
# MPDS determinants
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["25B6V", "25-B-6V", "25-B-6-V", "25 B 6 V", "25b6v", " 25B6V "])
def test_a_determinant_parses_in_every_way_cads_write_it(text: str) -> None:
    assert parse_determinant(text) == Determinant(25, "B", 6, "V")
    assert parse_determinant(text).canonical == "25-B-6V"  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["23O1A", "23Ω1A", "23-O-1-A"])
def test_omega_is_written_as_o_or_the_greek_letter(text: str) -> None:
    assert parse_determinant(text) == Determinant(23, "O", 1, "A")


@pytest.mark.parametrize("text", ["EDP", "421A", "405", "10-101", "25", "25B", "25X1", "0A1", "25A0", "MNTL", ""])
def test_other_codes_are_not_determinants(text: str) -> None:
    assert parse_determinant(text) is None


@pytest.mark.parametrize(
    ("code", "concerns", "flags"),
    [
        pytest.param("25A1", {"mental_health"}, set(), id="25A1-non-suicidal-alert"),
        pytest.param("25A2", {"mental_health", "suicidal_ideation"}, set(), id="25A2-suicidal-not-threatening"),
        pytest.param("25B3", {"mental_health", "suicidal_ideation"}, {"imminent_risk_to_self"}, id="25B3-threatening"),
        pytest.param("25B6", {"mental_health"}, set(), id="25B6-unknown-status-third-party"),
        pytest.param("25B6V", {"mental_health"}, {"violence_or_threat_to_others"}, id="suffix-V-violent"),
        pytest.param("25B1W", {"mental_health"}, {"medical_emergency", "weapon_present"}, id="suffix-W-weapons"),
        pytest.param("25B2B", {"mental_health"}, {"imminent_risk_to_self", "violence_or_threat_to_others",
                                                  "weapon_present"}, id="suffix-B-both"),
        pytest.param("25D1", {"mental_health"}, {"medical_emergency"}, id="25D1-not-alert"),
        pytest.param("25C9", {"mental_health"}, {"medical_emergency"}, id="unlisted-number-judged-by-level"),
        pytest.param("23B1", {"substance_use"}, set(), id="23B1-overdose-without-symptoms"),
        pytest.param("23O1A", {"substance_use"}, set(), id="23-omega-accidental"),
        pytest.param("23C1", {"substance_use"}, {"medical_emergency"}, id="23C1-not-alert"),
        pytest.param("23C1I", {"substance_use", "mental_health", "suicidal_ideation"},
                     {"medical_emergency", "imminent_risk_to_self"}, id="suffix-I-intentional"),
        pytest.param("23C7V", {"substance_use"}, {"medical_emergency", "violence_or_threat_to_others"},
                     id="23-violent"),
        pytest.param("41A1", {"mental_health", "suicidal_ideation"}, set(), id="41-caller-in-crisis"),
        pytest.param("17B1G", set(), set(), id="falls-known-no-meaning"),
        pytest.param("29D2P", set(), set(), id="traffic-known-no-meaning"),
    ],
)
def test_determinant_table(code: str, concerns: set[str], flags: set[str]) -> None:
    determinant = parse_determinant(code)
    assert determinant is not None
    effect = determinant_effect(determinant)
    assert {c.value for c in effect.concerns} == concerns
    assert set(effect.flags) == flags


# --------------------------------------------------------------------------------------------
# Triage with codes
# --------------------------------------------------------------------------------------------


def test_a_call_with_only_a_determinant_is_triaged_and_says_what_the_mapping_contributed() -> None:
    result = triage(call(nature_code="25B6V"), DEFAULT_POLICY)

    assert result.route is Route.EMERGENCY
    assert result.second_response_requested is True
    assert result.reasons == (
        "nature_code:25B6V -> mental_health",
        "nature_code:25B6V -> violence_or_threat_to_others",
        "violence_or_threat_to_others",
        "co_responder_second_response",
    )
    assert result.unmapped_codes == ()


def test_mpds_code_field_and_apco_type_are_read_too() -> None:
    result = triage(call(center_id="elsewhere", nature_code="10-101", mpds_code="25-A-2",
                         incident_type_common="MNTL"), DEFAULT_POLICY)

    assert result.route is Route.CO_RESPONDER  # third-party caller by default: someone goes on scene
    assert "mpds_code:25-A-2 -> mental_health" in result.reasons
    assert "mpds_code:25-A-2 -> suicidal_ideation" in result.reasons
    assert not any(reason.startswith("incident_type_common:") for reason in result.reasons), \
        "MNTL adds nothing the determinant did not already add"
    assert result.unmapped_codes == (CodeRef("nature_code", "10-101"),)


def test_explicit_flags_and_concerns_are_kept_and_not_repeated_as_mapping_reasons() -> None:
    result = triage(call(nature_code="25B6V", concerns=["mental_health"], violence_or_threat_to_others=True,
                         weapon_present=True), DEFAULT_POLICY)

    assert result.reasons == ("violence_or_threat_to_others", "weapon_present", "co_responder_second_response")


def test_a_mapping_never_removes_what_the_call_taker_set() -> None:
    # 25A1 alone would be a phone call; the call taker's weapon flag still wins.
    result = triage(call(nature_code="25A1", weapon_present=True, person_in_crisis_is_caller=True), DEFAULT_POLICY)

    assert result.route is Route.EMERGENCY
    assert "weapon_present" in result.reasons


def test_an_unknown_code_is_no_error_the_call_is_triaged_on_what_it_has() -> None:
    result = triage(call(nature_code="MEDLE", concerns=["substance_use"], person_in_crisis_is_caller=True),
                    DEFAULT_POLICY)

    assert result.route is Route.DIVERSION_LINE
    assert result.reasons == ("no_safety_flags_phone_resolvable",)
    assert result.unmapped_codes == (CodeRef("nature_code", "MEDLE"),)
    assert str(result.unmapped_codes[0]) == "nature_code:MEDLE"


def test_unmapped_codes_are_a_diagnostic_not_part_of_the_decision() -> None:
    first = triage(call(nature_code="MEDLE"), DEFAULT_POLICY)
    assert first == triage(call(nature_code="MEDLE", center_id="other-center"), DEFAULT_POLICY)
    decision, result = decide_explained(call(nature_code="MEDLE"), DEFAULT_POLICY, b"k")
    assert result.unmapped_codes == (CodeRef("nature_code", "MEDLE"),)
    assert "MEDLE" not in decision.model_dump_json().replace('"nature_code"', "")


def test_the_same_code_means_what_each_center_says() -> None:
    nyc = triage(call(center_id="nyc-fdny-ems", nature_code="EDPC"), DEFAULT_POLICY)
    lancaster = triage(call(center_id="lancaster-ne", nature_code="EDPC"), DEFAULT_POLICY)

    assert nyc.route is Route.EMERGENCY
    assert "nature_code:EDPC -> weapon_present" in nyc.reasons
    assert lancaster.unmapped_codes == (CodeRef("nature_code", "EDPC"),)
    assert lancaster.reasons == ("no_behavioral_health_concern",)


def test_a_center_not_listed_reads_its_codes_with_the_default() -> None:
    result = triage(call(center_id="not-listed", nature_code="SUICTHRT"), DEFAULT_POLICY)

    assert "nature_code:SUICTHRT -> imminent_risk_to_self" in result.reasons
    assert result.route is Route.EMERGENCY


def test_free_text_call_types_match_patterns_in_upper_case_with_spaces_collapsed() -> None:
    result = triage(call(center_id="seattle-spd", nature_code="person in  behavioral/emotional crisis"),
                    DEFAULT_POLICY)

    assert result.reasons[0] == "nature_code:person in  behavioral/emotional crisis -> mental_health"
    assert result.route is Route.CO_RESPONDER


def test_precedence_exact_then_known_then_longest_prefix_then_pattern_then_builtin() -> None:
    codes = CenterCodes.model_validate({
        "codes": {"25B6V": {"concerns": ["trauma"]}},
        "known": ["ODX"],
        "prefixes": {"OD": {"concerns": ["substance_use"]}, "ODL": {"concerns": ["quality_of_life"]}},
        "patterns": [{"pattern": "OD.*", "concerns": ["welfare_check"]}, {"pattern": "2.*", "concerns": ["trauma"]}],
    })

    def concerns(code: str) -> set[str] | None:
        found = codes.resolve(code)
        return None if found is None else {c.value for c in found.effect.concerns}

    assert concerns("25B6V") == {"trauma"}  # exact beats the MPDS table
    assert concerns("ODX") == set()  # known: recognised, no meaning
    assert concerns("ODLX") == {"quality_of_life"}  # longest prefix
    assert concerns("ODY") == {"substance_use"}
    assert concerns("25A1") == {"trauma"}  # a pattern beats the MPDS table
    assert concerns("MNTL") == {"mental_health"}  # APCO, built in
    assert concerns("NOPE") is None


def test_builtin_tables_can_be_switched_off_per_center() -> None:
    policy = policy_with_codes(default={"builtin": []}, centers={"a": {"builtin": ["apco"]}})

    assert triage(call(center_id="x", nature_code="25B6V"), policy).unmapped_codes == (CodeRef("nature_code", "25B6V"),)
    assert triage(call(center_id="a", nature_code="25B6V"), policy).unmapped_codes == (CodeRef("nature_code", "25B6V"),)
    assert triage(call(center_id="a", nature_code="MTLV"), policy).unmapped_codes == ()


def test_apco_incident_types_and_dispositions() -> None:
    assert apco.incident_type_effect("mtlv") == CodeEffect.of({"mental_health"}, {"violence_or_threat_to_others"})
    assert apco.incident_type_effect("FIRE") is None
    assert apco.disposition_for("5") is Disposition.RESOLVED_BY_PHONE
    assert apco.disposition_for("05") is Disposition.RESOLVED_BY_PHONE
    assert apco.disposition_for("42") is Disposition.RESOURCES_DECLINED
    assert apco.disposition_for("01") is None


def test_mapped_flags_are_exactly_the_policys_safety_flags() -> None:
    assert set(get_args(MappedFlag)) == set(SAFETY_FLAGS)


def test_a_policy_without_a_nature_codes_section_understands_mpds_and_apco() -> None:
    data = tomllib.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    del data["nature_codes"]
    policy = Policy.model_validate(data)

    assert policy.nature_codes == NatureCodeSettings()
    assert triage(call(center_id="x", nature_code="23C1I"), policy).route is Route.EMERGENCY


def test_metric_labels_are_bounded_by_the_centers_the_policy_lists() -> None:
    assert DEFAULT_POLICY.nature_codes.metric_label("nyc-fdny-ems") == "nyc-fdny-ems"
    assert DEFAULT_POLICY.nature_codes.metric_label("anything-else") == "other"


def test_normalise_code() -> None:
    assert normalise_code("  edp  transport ") == "EDP TRANSPORT"


# --------------------------------------------------------------------------------------------
# A bad mapping is refused on load, naming the entry
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        pytest.param('[nature_codes.centers.a]\ncodes.EDP = { concerns = ["sadness"] }\n',
                     "nature_codes.centers.a.codes.EDP.concerns", id="unknown-concern"),
        pytest.param('[nature_codes.centers.a]\ncodes.EDP = { flags = ["juvenile"] }\n',
                     "nature_codes.centers.a.codes.EDP.flags", id="not-a-safety-flag"),
        pytest.param('[nature_codes.centers.a]\npatterns = [{ pattern = "(" }]\n',
                     "not a valid regular expression", id="bad-regex"),
        pytest.param('[nature_codes.centers.a]\ncodes.edp = {}\ncodes.EDP = {}\n',
                     "listed twice", id="duplicate-after-normalising"),
        pytest.param('[nature_codes.centers.a]\ncodes.EDP = {}\nknown = ["edp"]\n',
                     "both in 'known'", id="known-and-mapped"),
        pytest.param('[nature_codes.centers.a]\nbuiltin = ["nfpa"]\n',
                     "nature_codes.centers.a.builtin", id="unknown-builtin-table"),
        pytest.param('[nature_codes.centers.a]\ncode.EDP = {}\n',
                     "nature_codes.centers.a.code", id="typo-in-a-key"),
    ],
)
def test_a_bad_mapping_is_refused_naming_where(tmp_path: Path, section: str, problem: str) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    text = text[: text.index("\n[nature_codes.default]") + 1] + section
    path = tmp_path / "city.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(PolicyError) as excinfo:
        load_policy(path)
    assert "city.toml is invalid" in str(excinfo.value)
    assert problem in str(excinfo.value)


# --------------------------------------------------------------------------------------------
# Properties: a mapping can only add safety
# --------------------------------------------------------------------------------------------

effects = st.builds(
    lambda concerns, flags: {"concerns": sorted(concerns), "flags": sorted(flags)},
    st.sets(st.sampled_from([c.value for c in Concern])),
    st.sets(st.sampled_from(SAFETY_FLAGS)),
)


@st.composite
def calls_and_mappings(draw: st.DrawFn) -> tuple[CallReceived, Policy]:
    flags = {flag: draw(st.booleans()) for flag in SAFETY_FLAGS}
    the_call = call(
        center_id="c", nature_code=draw(st.sampled_from(["X1", "25B6V", "23C1I", "MNTL", "EDP"])),
        concerns=draw(st.lists(st.sampled_from([c.value for c in Concern]), unique=True)),
        person_in_crisis_is_caller=draw(st.booleans()), **flags,
    )
    mapping = {"codes": {"X1": draw(effects), "EDP": draw(effects)}, "builtin": draw(st.sets(st.sampled_from(
        ["mpds", "apco"])).map(sorted))}
    return the_call, policy_with_codes(centers={"c": mapping})


NO_MAPPING = policy_with_codes(default={"builtin": []})


@settings(max_examples=200, deadline=None)
@given(case=calls_and_mappings())
def test_a_call_with_an_explicit_safety_flag_never_reaches_the_diversion_line_under_any_mapping(
    case: tuple[CallReceived, Policy],
) -> None:
    the_call, policy = case
    if any(getattr(the_call, flag) for flag in SAFETY_FLAGS):
        assert triage(the_call, policy).route is not Route.DIVERSION_LINE


@settings(max_examples=200, deadline=None)
@given(case=calls_and_mappings())
def test_a_behavioral_call_is_never_routed_less_safely_with_its_mapping_than_without(
    case: tuple[CallReceived, Policy],
) -> None:
    the_call, policy = case
    without = triage(the_call, NO_MAPPING)
    with_mapping = triage(the_call, policy)
    if "no_behavioral_health_concern" not in without.reasons:
        assert with_mapping.route.rank >= without.route.rank
    names = {c.value for c in Concern} | set(SAFETY_FLAGS)
    for reason in with_mapping.reasons:
        if reason.startswith("nature_code:"):
            code, _, name = reason.removeprefix("nature_code:").partition(" -> ")
            assert code == the_call.nature_code and name in names
