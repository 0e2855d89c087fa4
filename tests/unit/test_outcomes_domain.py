"""The outcome definitions and the fold behind the aggregates, tested directly and with hypothesis."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.outcome_definitions import (
    NEMSIS_TRANSPORT,
    DerivedReason,
    DispositionGroup,
    ProgramRoute,
    Status,
    disposition_group,
    service,
)
from domain.outcome_report import nearest_rank
from domain.outcomes import CallFacts, apply_all, contributions, deltas
from domain.policy import load_policy
from schemas.calls import CallClosed, Disposition, UnitArrived, UnitDispatched
from schemas.sla import SlaEvent
from schemas.triage import Route, TriageDecision

ZONE = load_policy().zone
T0 = datetime(2026, 11, 3, 5, 30, tzinfo=UTC)  # 23:30 on Nov 2 in Chicago


def decision(call_id: str = "c1", route: Route = Route.CO_RESPONDER, at: datetime = T0, second: bool = False,
             kind: str = "triage.decided", reasons: tuple[str, ...] = ("needs_on_scene_support",)) -> TriageDecision:
    return TriageDecision(type=kind, event_id=f"{call_id}-{kind}-{at.isoformat()}", call_id=call_id,  # type: ignore[arg-type]
                          source_event_id="s", decided_at=at, route=route, reasons=reasons, policy_name="p",
                          policy_version="1", second_response_requested=second, center_id="stl-911",
                          district="district-1", person_ref="ref")


def dispatched(minutes: float, unit: str = "co_responder", call_id: str = "c1") -> UnitDispatched:
    return UnitDispatched(event_id=f"d{minutes}{unit}", call_id=call_id, occurred_at=T0 + timedelta(minutes=minutes),
                          unit_id="U1", unit_type=unit)  # type: ignore[arg-type]


def arrived(minutes: float, call_id: str = "c1") -> UnitArrived:
    return UnitArrived(event_id=f"a{minutes}", call_id=call_id, occurred_at=T0 + timedelta(minutes=minutes),
                       unit_id="U1", unit_type="co_responder")  # type: ignore[arg-type]


def closed(minutes: float, disposition: str = "stabilized_on_scene", reason: str | None = None) -> CallClosed:
    return CallClosed(event_id=f"x{minutes}", call_id="c1", occurred_at=T0 + timedelta(minutes=minutes),
                      disposition=disposition, unserved_reason=reason)  # type: ignore[arg-type]


def measures(facts: CallFacts) -> Counter[str]:
    return Counter({key[-1]: n for key, n in contributions(facts, ZONE).items()})


def fold(*items):  # type: ignore[no-untyped-def]
    return apply_all({}, items)["c1"]


def test_a_call_belongs_to_its_local_day_and_hour():
    [key] = [k for k in contributions(fold(decision()), ZONE) if k[-1] == "calls"]
    assert key[:5] == ("stl-911", date(2026, 11, 2), 23, "district-1", "co_responder")


def test_served_when_the_team_arrives_and_a_late_arrival_turns_unserved_into_served():
    before = fold(decision(), dispatched(2), closed(30))
    assert measures(before)["unserved:closed_before_arrival"] == 1
    after = apply_all({"c1": before}, [arrived(10)])
    change = Counter({k[-1]: n for k, n in deltas({"c1": before}, after, ZONE).items()})
    assert change == Counter({"status:served": 1, "status:unserved": -1, "unserved:closed_before_arrival": -1,
                              "team_arrived": 1, "served_closed": 1, "diverted_from_jail": 1,
                              "diverted_from_hospital": 1})


def test_the_cad_reason_fills_in_only_what_the_events_cannot_show():
    assert measures(fold(decision(), closed(30, "cancelled", "no_team_available")))[
        "unserved:no_team_available"] == 1
    assert measures(fold(decision(), closed(30)))["unserved:never_dispatched"] == 1
    # dispatched then closed: the events show it, whatever the CAD says
    assert measures(fold(decision(), dispatched(1), closed(30, "cancelled", "no_team_available")))[
        "unserved:cancelled_before_arrival"] == 1


def test_an_override_away_from_the_program_keeps_the_call_eligible_and_unserved():
    facts = fold(decision(), decision(route=Route.EMERGENCY, at=T0 + timedelta(minutes=1), kind="triage.overridden"))
    counted = measures(facts)
    assert counted["eligible"] == 1 and counted["route:co_responder"] == 1
    assert counted["unserved:overridden_by_dispatcher"] == 1


def test_a_route_closed_for_the_hours_is_eligible_and_unserved_outside_hours():
    facts = fold(decision(route=Route.EMERGENCY, reasons=("no_safety_flags_phone_resolvable", "diversion_line_closed",
                                                          "co_responder_closed")))
    counted = measures(facts)
    assert counted["route:diversion_line"] == 1 and counted["unserved:outside_hours"] == 1


def test_the_diversion_line_resolves_by_phone_only_without_any_field_unit():
    line = decision(route=Route.DIVERSION_LINE)
    assert measures(fold(line, closed(20, "resolved_by_phone")))["resolved_without_field_unit"] == 1
    with_unit = measures(fold(line, dispatched(5, "police"), closed(20, "resolved_by_phone")))
    assert with_unit["status:served"] == 1 and with_unit["resolved_without_field_unit"] == 0
    assert with_unit["police_backup"] == 1
    assert measures(fold(line, closed(20, "unable_to_contact")))["unserved:not_reached"] == 1


def test_the_first_sla_outcome_counts_by_response():
    met = SlaEvent(type="sla.met", event_id="m", call_id="c1", response="first", requested_at=T0,  # type: ignore[arg-type]
                   deadline_at=T0, occurred_at=T0 + timedelta(minutes=9))
    assert measures(fold(decision(), met))["sla_met:first"] == 1


def test_disposition_groups_depend_on_a_unit_on_scene_and_every_disposition_has_a_nemsis_code():
    assert disposition_group(Disposition.SAFETY_PLAN, on_scene=False) is DispositionGroup.RESOLVED_BY_PHONE
    assert disposition_group(Disposition.SAFETY_PLAN, on_scene=True) is DispositionGroup.STABILIZED_ON_SCENE
    assert disposition_group(Disposition.INVOLUNTARY_HOLD, True) is DispositionGroup.EMERGENCY_DEPARTMENT_INVOLUNTARY
    assert set(NEMSIS_TRANSPORT) == set(Disposition)
    assert all(code.transport_code in {"7701001", "4230001", "4230005", "4230009", "4230013"}
               for code in NEMSIS_TRANSPORT.values())


def test_service_rules_table():
    S = Status
    assert service(ProgramRoute.CO_RESPONDER, False, False, True, False, None, None).status is S.SERVED
    assert service(ProgramRoute.CO_RESPONDER, False, False, False, False, None, None).status is S.OPEN
    assert service(ProgramRoute.NOT_ELIGIBLE, True, False, False, False, None, None).reason is \
        DerivedReason.OUTSIDE_HOURS


def test_nearest_rank_is_percentile_disc():
    assert nearest_rank([5, 1, 3, 2, 4], 0.5) == 3
    assert nearest_rank(list(range(1, 11)), 0.9) == 9
    assert nearest_rank([7.0], 0.9) == 7.0
    assert nearest_rank([], 0.5) is None


events = st.lists(st.sampled_from([
    decision(), decision(route=Route.EMERGENCY, at=T0 + timedelta(minutes=3), kind="triage.overridden"),
    decision(route=Route.CO_RESPONDER, at=T0 + timedelta(minutes=4), kind="triage.overridden"),
    dispatched(2), dispatched(6), dispatched(3, "police"), arrived(12), arrived(15), closed(40),
    closed(25, "cancelled"), closed(50, "transported_to_crisis_center", "other"),
]), unique_by=lambda e: e.event_id, max_size=8)


@settings(max_examples=300, deadline=None)
@given(events, st.randoms(use_true_random=False))
def test_the_fold_does_not_depend_on_the_order_events_arrive_in(items, rng):
    shuffled = list(items)
    rng.shuffle(shuffled)
    assert apply_all({}, items) == apply_all({}, shuffled)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(0, 8))
def test_aggregate_deltas_add_up_to_what_the_final_facts_count(items, cut):
    """Applying a call's events in two batches changes the aggregates by exactly what one batch would."""
    first = apply_all({}, items[:cut])
    kept = {call_id: replace(facts) for call_id, facts in first.items()}
    second = apply_all(first, items[cut:])
    assert first == kept  # the fold changes its own copies only, never the facts it was given
    total = deltas({}, first, ZONE) + Counter()
    total.update(deltas(first, {**first, **second}, ZONE))
    final = {**first, **second}
    expected = Counter()
    for facts in final.values():
        expected.update(contributions(facts, ZONE))
    assert +total == +expected


@settings(max_examples=300, deadline=None)
@given(events)
def test_every_eligible_call_is_served_unserved_with_one_reason_or_open(items):
    counted = measures(fold(decision(), *items))
    assert counted["eligible"] == counted["status:served"] + counted["status:unserved"] + counted["status:open"] == 1
    assert sum(n for m, n in counted.items() if m.startswith("unserved:")) == counted["status:unserved"]
    assert sum(n for m, n in counted.items() if m.startswith("disposition:")) == counted["closed"]


@settings(max_examples=200, deadline=None)
@given(events)
def test_a_batch_fold_equals_applying_each_event_in_turn(items):
    from domain.outcomes import apply

    facts = CallFacts("c1")
    for item in items:
        facts = apply(facts, item)
    assert apply_all({}, items).get("c1", CallFacts("c1")) == facts
