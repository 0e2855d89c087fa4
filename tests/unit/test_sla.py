"""Timer arithmetic: pure functions, checked directly and with hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.policy import load_policy
from domain.timers.sla_arrival import SlaTimer, advance, record_arrival, record_close, timer_for
from schemas.sla import Response
from schemas.triage import Route, TriageDecision

T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
POLICY = load_policy()


def decision(route: Route = Route.CO_RESPONDER, second: bool = False) -> TriageDecision:
    return TriageDecision(event_id="d", call_id="c1", source_event_id="e", decided_at=T0, route=route,
                          reasons=("r",), policy_name="p", policy_version="1", second_response_requested=second)


def timer(response: Response = Response.FIRST) -> SlaTimer:
    return SlaTimer("c1", response, T0, T0 + timedelta(minutes=15), T0 + timedelta(minutes=20))


def test_timer_starts_only_when_the_team_is_requested():
    first = timer_for(decision(), POLICY)
    assert first is not None and first.response is Response.FIRST
    assert first.breach_at - first.requested_at == timedelta(seconds=POLICY.sla[Response.FIRST].breach_after_seconds)
    second = timer_for(decision(Route.EMERGENCY, second=True), POLICY)
    assert second is not None and second.response is Response.SECOND
    assert timer_for(decision(Route.DIVERSION_LINE), POLICY) is None
    assert timer_for(decision(Route.EMERGENCY), POLICY) is None


def test_arrival_exactly_at_the_deadline_meets_it():
    t = timer()
    _, events = record_arrival(t, t.breach_at)
    assert [e.type for e in events] == ["sla.warning", "sla.met"]
    _, events = record_arrival(t, t.warning_at)
    assert [e.type for e in events] == ["sla.met"]


def test_duplicate_arrival_and_arrival_after_close_change_nothing():
    t, _ = record_arrival(timer(), T0 + timedelta(minutes=5))
    assert record_arrival(t, T0 + timedelta(minutes=6)) == (t, [])
    closed, _ = record_close(timer(), T0 + timedelta(minutes=1))
    assert record_arrival(closed, T0 + timedelta(minutes=2)) == (closed, [])


minutes = st.floats(min_value=0, max_value=120, allow_nan=False)


@given(arrived=minutes)
def test_every_arrival_gives_exactly_one_outcome(arrived):
    t = timer()
    at = T0 + timedelta(minutes=arrived)
    _, events = record_arrival(t, at)
    kinds = [e.type for e in events]
    outcome = [k for k in kinds if k in ("sla.met", "sla.late_arrival")]
    assert outcome == (["sla.met"] if at <= t.breach_at else ["sla.late_arrival"])
    assert ("sla.warning" in kinds) == (at > t.warning_at)
    assert ("sla.breached" in kinds) == (at > t.breach_at)
    assert events[-1].arrival_seconds == (at - T0).total_seconds()


@given(steps=st.lists(minutes, max_size=8), final=minutes)
def test_advancing_in_any_steps_fires_the_same_events_once(steps, final):
    """Live ticks every second or one replay jump: the same events, each exactly once."""
    t, fired = timer(), []
    for step in [*sorted(steps), final]:
        if T0 + timedelta(minutes=step) <= T0 + timedelta(minutes=final):
            t, events = advance(t, T0 + timedelta(minutes=step))
            fired += events
    _, direct = advance(timer(), T0 + timedelta(minutes=final))
    assert [e.event_id for e in fired] == [e.event_id for e in direct]
    assert len({e.event_id for e in fired}) == len(fired)


@given(closed=minutes, later=minutes)
def test_a_closed_timer_never_fires_again(closed, later):
    t, before = record_close(timer(), T0 + timedelta(minutes=closed))
    t2, after = advance(t, T0 + timedelta(minutes=closed + later))
    assert after == [] and t2 == t
    assert all(e.deadline_at < T0 + timedelta(minutes=closed) for e in before)
