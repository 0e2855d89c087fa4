"""Follow-up schedules: pure timer arithmetic, checked directly and with hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.policy import DEFAULT_POLICY_PATH, FollowupSettings, PolicyError, load_policy
from domain.timers.followup import Followup, FollowupTimer, advance, schedule_for
from domain.timers.kind import Step, TimerContext
from schemas.calls import AttemptResult, CallClosed, FollowupAttempted, FollowupCompleted, Linkage
from schemas.triage import Route, TriageDecision

T = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)
POLICY = load_policy()
KIND = Followup(POLICY)


def decision(route: Route = Route.DIVERSION_LINE, second: bool = False) -> TriageDecision:
    return TriageDecision(event_id="d", call_id="c1", source_event_id="e", decided_at=T - timedelta(hours=1),
                          route=route, reasons=("r",), policy_name="p", policy_version="1",
                          second_response_requested=second, person_ref="ref-1", district="district-1")


def close(hours: float = 0, disposition: str = "resolved_by_phone") -> CallClosed:
    return CallClosed(event_id=f"x{hours}", call_id="c1", occurred_at=T + timedelta(hours=hours),
                      disposition=disposition)  # type: ignore[arg-type]


def attempt(hours: float, result: AttemptResult, n: int = 0) -> FollowupAttempted:
    return FollowupAttempted(event_id=f"a{n}-{hours}", call_id="c1", occurred_at=T + timedelta(hours=hours),
                             attempt_result=result, attempted_by="clinician-1", channel="phone")  # type: ignore[arg-type]


def complete(hours: float, linkage: Linkage = Linkage.PEER_SUPPORT) -> FollowupCompleted:
    return FollowupCompleted(event_id=f"c{hours}", call_id="c1", occurred_at=T + timedelta(hours=hours),
                             linkage=linkage)


def started() -> FollowupTimer:
    step = KIND.on_event(None, close(), TimerContext(decision()))
    assert step.started and step.state is not None
    return step.state


@pytest.mark.parametrize(("route", "second", "disposition", "follows_up"), [
    (Route.DIVERSION_LINE, False, "resolved_by_phone", True),
    (Route.CO_RESPONDER, False, "stabilized_on_scene", True),
    (Route.EMERGENCY, True, "transported", True),  # the team's second response
    (Route.EMERGENCY, False, "transported", False),  # police/EMS alone: no crisis contact
    (Route.CO_RESPONDER, False, "arrested", False),
    (Route.DIVERSION_LINE, False, "cancelled", False),
])
def test_which_contacts_get_a_follow_up(route: Route, second: bool, disposition: str, follows_up: bool) -> None:
    timer = schedule_for(close(disposition=disposition), decision(route, second), POLICY.followup)
    assert (timer is not None) is follows_up
    if timer is not None:
        assert timer.due_at == (T + timedelta(hours=24), T + timedelta(hours=72), T + timedelta(days=7))
        assert timer.expires_at == T + timedelta(days=30) and timer.person_ref == "ref-1"


def test_the_first_attempt_is_due_when_the_contact_ends() -> None:
    step = KIND.on_event(None, close(), TimerContext(decision()))
    [due] = step.events
    assert (due.type, due.attempt_number, due.due_at, due.occurred_at) == (
        "followup.due", 1, T + timedelta(hours=24), T)


def test_a_close_without_a_decision_is_explained_not_followed_up() -> None:
    assert KIND.on_event(None, close(), TimerContext(None)) == Step(None, notes=("close_without_decision",))


def test_attempts_without_a_schedule_are_explained() -> None:
    step = KIND.on_event(None, attempt(1, AttemptResult.REACHED), TimerContext(None))
    assert step.state is None and step.notes == ("followup_without_schedule",)


def test_a_late_attempt_is_due_no_earlier_than_the_attempt_before_it() -> None:
    timer = started()
    step = KIND.on_event(timer, attempt(80, AttemptResult.NO_ANSWER), TimerContext(None))
    # The attempt came after attempt 2's scheduled time (72 h): attempt 2 is due at once, not in the past.
    # Attempt 1 was overdue at 28 h, which the late attempt fires first (event time passed it).
    assert [(e.type, e.attempt_number, e.due_at) for e in step.events] == [
        ("followup.overdue", 1, T + timedelta(hours=24)), ("followup.due", 2, T + timedelta(hours=80))]


def test_the_first_attempt_is_observed_for_the_metrics() -> None:
    step = KIND.on_event(started(), attempt(6, AttemptResult.NO_ANSWER), TimerContext(None))
    assert step.observations == (("followup_first_attempt_seconds", 6 * 3600),)
    again = KIND.on_event(step.state, attempt(30, AttemptResult.NO_ANSWER, 1), TimerContext(None))
    assert again.observations == ()


def test_a_replayed_attempt_changes_nothing() -> None:
    once = KIND.on_event(started(), attempt(6, AttemptResult.NO_ANSWER), TimerContext(None))
    twice = KIND.on_event(once.state, attempt(6, AttemptResult.NO_ANSWER), TimerContext(None))
    assert twice.state == once.state and twice.events == ()


def test_events_after_the_end_are_explained() -> None:
    done = KIND.on_event(started(), complete(5), TimerContext(None))
    late = KIND.on_event(done.state, attempt(6, AttemptResult.NO_ANSWER), TimerContext(None))
    assert late.events == () and late.notes == ("followup_after_end",)


def test_policy_refuses_a_schedule_shorter_than_the_attempts() -> None:
    with pytest.raises(ValueError, match="one per attempt"):
        FollowupSettings(attempt_due_after_hours=(24, 72), attempts_before_dropout=3)
    with pytest.raises(ValueError, match="increase"):
        FollowupSettings(attempt_due_after_hours=(24, 24, 48))
    with pytest.raises(ValueError, match="last attempt"):
        FollowupSettings(expire_after_days=5)


def test_a_policy_file_with_a_bad_followup_section_names_the_field(tmp_path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(POLICY_TEXT.replace("attempts_before_dropout = 3", "attempts_before_dropout = 0"))
    with pytest.raises(PolicyError, match=r"followup\.attempts_before_dropout"):
        load_policy(path)


POLICY_TEXT = DEFAULT_POLICY_PATH.read_text()

# -- properties ---------------------------------------------------------------------------------

actions = st.lists(
    st.one_of(
        st.tuples(st.just("attempt"), st.floats(0.1, 800), st.sampled_from(list(AttemptResult))),
        st.tuples(st.just("complete"), st.floats(0.1, 800), st.sampled_from(list(Linkage))),
        st.tuples(st.just("advance"), st.floats(0.1, 900), st.none()),
    ),
    max_size=12,
)


def run(plan: list[tuple[str, float, object]]) -> tuple[FollowupTimer, list[object]]:
    """Apply a plan in event-time order, as the pipeline would; returns the final state and every event."""
    timer = started()
    events: list[object] = list(KIND.on_event(None, close(), TimerContext(decision())).events)
    for n, (action, hours, value) in enumerate(sorted(plan, key=lambda item: item[1])):
        if action == "attempt":
            step = KIND.on_event(timer, attempt(hours, value, n), TimerContext(None))  # type: ignore[arg-type]
        elif action == "complete":
            step = KIND.on_event(timer, complete(hours, value), TimerContext(None))  # type: ignore[arg-type]
        else:
            step = KIND.advance(timer, T + timedelta(hours=hours))
        assert step.state is not None
        timer = step.state
        events.extend(step.events)
    return timer, events


@settings(max_examples=300, deadline=None)
@given(actions)
def test_every_schedule_emits_each_step_once_and_ends_once(plan: list[tuple[str, float, object]]) -> None:
    timer, events = run(plan)
    ids = [e.event_id for e in events]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids)), "an event id twice"
    types = [e.type for e in events]  # type: ignore[attr-defined]
    endings = [t for t in types if t in ("followup.completed", "followup.dropped_out", "followup.expired")]
    assert len(endings) <= 1 and (timer.status == "open") is (not endings)
    if endings:
        assert types[-1] == endings[0], "nothing after the end"
    dues = [e.attempt_number for e in events if e.type == "followup.due"]  # type: ignore[attr-defined]
    assert dues == list(range(1, len(dues) + 1)), "attempts become due one after the other, from 1"
    assert len(dues) <= POLICY.followup.attempts_before_dropout
    overdue = [e.attempt_number for e in events if e.type == "followup.overdue"]  # type: ignore[attr-defined]
    assert len(overdue) == len(set(overdue)) and set(overdue) <= set(dues)
    if "followup.dropped_out" in types:
        assert timer.failed_attempts == POLICY.followup.attempts_before_dropout
    times = [e.occurred_at for e in events]  # type: ignore[attr-defined]
    assert times == sorted(times), "events come in event-time order"


@settings(max_examples=200, deadline=None)
@given(actions, st.floats(0, 1000))
def test_advancing_twice_to_the_same_time_fires_nothing_new(plan: list[tuple[str, float, object]],
                                                            hours: float) -> None:
    timer, _ = run(plan)
    now = T + timedelta(hours=hours)
    once, _ = advance(timer, now)
    again, events = advance(once, now)
    assert again == once and events == []
    deadline = once.next_deadline
    assert deadline is None or not deadline < now, "nothing left due at the time it was advanced to"


@settings(max_examples=200, deadline=None)
@given(actions)
def test_state_survives_the_store(plan: list[tuple[str, float, object]]) -> None:
    timer, _ = run(plan)
    assert KIND.decode(KIND.encode(timer)) == timer
