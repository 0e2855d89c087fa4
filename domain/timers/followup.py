"""Follow-up schedules (kind ``followup``): the post-event response, as pure timer arithmetic.

When a contact ends (``call.closed``) on a route the policy follows up (diversion line, co-responder
team, second response) with a disposition it does not skip, a schedule starts: attempt 1 is due
``attempt_due_after_hours[0]`` after the close (``followup.due``). Then, from the CAD's
``followup.attempted`` / ``followup.completed`` events and the clock:

- an attempt that does not reach the person (no answer, message left, wrong number) makes the next
  attempt due (``followup.due``), at its scheduled time but never before that attempt; after
  ``attempts_before_dropout`` of them the person has **dropped out** (``followup.dropped_out``);
- an attempt that reaches the person stops the schedule of attempts; the follow-up stays open until
  ``followup.completed`` says where the person was linked;
- an attempt where the person declines ends it as completed with linkage ``declined``;
- a due attempt with none recorded ``overdue_grace_hours`` after its due time is **overdue**
  (``followup.overdue``, once per attempt);
- a follow-up still open ``expire_after_days`` after the contact **expires** (``followup.expired``).

The schedule is fixed when the contact ends, so a policy change never moves running follow-ups.
One schedule per contact: a person's other calls have schedules of their own (they may sit on
other partitions), and reports count people with more than one open.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from domain.policy import FollowupSettings, Policy
from domain.timers.kind import Step, TimerContext, stored_optional_time, stored_time
from domain.triage import deterministic_id
from schemas.calls import AttemptResult, CallClosed, CallEvent, Channel, FollowupAttempted, FollowupCompleted, Linkage
from schemas.followups import Contact, FollowupEvent, FollowupEventType
from schemas.triage import Route, TriageDecision

KIND = "followup"
NOTES = ("close_without_decision", "followup_without_schedule", "followup_after_end")
FIRST_ATTEMPT_SECONDS = "followup_first_attempt_seconds"
NOT_REACHED = frozenset({AttemptResult.NO_ANSWER, AttemptResult.LEFT_MESSAGE, AttemptResult.WRONG_NUMBER})


class Attempt(NamedTuple):
    event_id: str
    attempted_at: datetime
    result: AttemptResult
    channel: Channel


class FollowupTimer(NamedTuple):
    """One contact's follow-up schedule and history (immutable; ``_replace`` makes the next)."""

    call_id: str
    contact: Contact
    contact_ended_at: datetime
    disposition: str
    due_at: tuple[datetime, ...]  # attempt n is due at due_at[n - 1]
    overdue_grace_seconds: float
    expires_at: datetime
    person_ref: str | None = None
    district: str | None = None
    center_id: str | None = None
    attempts: tuple[Attempt, ...] = ()
    failed_attempts: int = 0  # attempts that did not reach the person (kept: read on every deadline check)
    overdue_announced: int = 0  # the highest attempt number announced overdue
    reached_at: datetime | None = None
    status: str = "open"  # open, completed, dropped_out, expired
    ended_at: datetime | None = None
    linkage: Linkage | None = None

    @property
    def open(self) -> bool:
        return self.status == "open"

    @property
    def next_attempt(self) -> int | None:
        """The number of the attempt now due, or ``None`` when no attempt is due any more."""
        if not self.open or self.reached_at is not None or self.failed_attempts >= len(self.due_at):
            return None
        return self.failed_attempts + 1

    def attempt_due_at(self, number: int) -> datetime:
        """When attempt ``number`` is due: its scheduled time, never before the attempt that preceded it."""
        due = self.due_at[number - 1]
        failed = [attempt.attempted_at for attempt in self.attempts if attempt.result in NOT_REACHED]
        return max(due, failed[number - 2]) if number >= 2 and len(failed) >= number - 1 else due

    @property
    def overdue_deadline(self) -> datetime | None:
        number = self.next_attempt
        if number is None or self.overdue_announced >= number:
            return None
        return self.attempt_due_at(number) + timedelta(seconds=self.overdue_grace_seconds)

    @property
    def next_deadline(self) -> datetime | None:
        if not self.open:
            return None
        overdue = self.overdue_deadline
        return min(overdue, self.expires_at) if overdue is not None else self.expires_at


def contact_for(route: Route, second_response_requested: bool) -> Contact | None:
    """The kind of crisis contact a route leads to, if any (police/EMS alone: none)."""
    if route is Route.DIVERSION_LINE:
        return Contact.DIVERSION_LINE
    if route is Route.CO_RESPONDER:
        return Contact.CO_RESPONDER
    if second_response_requested:
        return Contact.SECOND_RESPONSE
    return None


def contact_of(decision: TriageDecision) -> Contact | None:
    """The kind of crisis contact a decision leads to, if any."""
    return contact_for(decision.route, decision.second_response_requested)


def schedule_for(close: CallClosed, decision: TriageDecision, settings: FollowupSettings) -> FollowupTimer | None:
    """The follow-up a close starts, or ``None`` when the policy does not follow this contact up."""
    contact = contact_of(decision)
    if contact is None or contact not in settings.contacts or close.disposition in settings.skip_dispositions:
        return None
    ended = close.occurred_at
    return FollowupTimer(
        call_id=close.call_id,
        contact=contact,
        contact_ended_at=ended,
        disposition=close.disposition.value,
        due_at=tuple(ended + settings.attempt_due_after(n) for n in range(1, settings.attempts_before_dropout + 1)),
        overdue_grace_seconds=settings.overdue_grace.total_seconds(),
        expires_at=ended + settings.expire_after,
        person_ref=decision.person_ref,
        district=decision.district,
        center_id=decision.center_id,
    )


def _event(timer: FollowupTimer, kind: FollowupEventType, occurred_at: datetime, attempt_number: int | None = None,
           **fields: Any) -> FollowupEvent:
    # One event of each type per schedule (per attempt for due and overdue): the id names the
    # schedule (call and contact end, in UTC) and the step.
    parts = [kind, timer.call_id, timer.contact_ended_at.astimezone(UTC).isoformat()]
    if attempt_number is not None:
        parts.append(str(attempt_number))
    return FollowupEvent(
        type=kind,
        event_id=deterministic_id(*parts),
        call_id=timer.call_id,
        occurred_at=occurred_at,
        contact=timer.contact,
        contact_ended_at=timer.contact_ended_at,
        attempts_made=len(timer.attempts),
        attempt_number=attempt_number,
        person_ref=timer.person_ref,
        district=timer.district,
        center_id=timer.center_id,
        **fields,
    )


def _due(timer: FollowupTimer, number: int, occurred_at: datetime) -> FollowupEvent:
    return _event(timer, "followup.due", occurred_at, number, due_at=timer.attempt_due_at(number))


def advance(timer: FollowupTimer, now: datetime) -> tuple[FollowupTimer, list[FollowupEvent]]:
    """Fire the deadlines passed by ``now``, in time order: overdue attempts, then expiry."""
    events: list[FollowupEvent] = []
    while (deadline := timer.next_deadline) is not None and now > deadline:
        overdue = timer.overdue_deadline
        if overdue is not None and overdue <= timer.expires_at:
            number = timer.next_attempt
            assert number is not None  # an overdue deadline exists only for a due attempt
            timer = timer._replace(overdue_announced=number)
            events.append(_event(timer, "followup.overdue", overdue, number, due_at=timer.attempt_due_at(number)))
        else:
            timer = timer._replace(status="expired", ended_at=timer.expires_at)
            events.append(_event(timer, "followup.expired", timer.expires_at))
    return timer, events


def _end(timer: FollowupTimer, at: datetime, linkage: Linkage) -> tuple[FollowupTimer, FollowupEvent]:
    timer = timer._replace(status="completed", ended_at=at, linkage=linkage)
    days = round((at - timer.contact_ended_at).total_seconds() / 86400, 4)
    return timer, _event(timer, "followup.completed", at, linkage=linkage, days_from_contact=days)


def record_attempt(timer: FollowupTimer, event: FollowupAttempted) -> Step[FollowupTimer]:
    """One attempt: reached, declined (ends it), or not reached (the next is due, or dropped out)."""
    timer, events = advance(timer, event.occurred_at)
    if not timer.open:
        return Step(timer, tuple(events), notes=("followup_after_end",))
    if any(attempt.event_id == event.event_id for attempt in timer.attempts):
        return Step(timer, tuple(events))  # a replayed attempt
    observations: tuple[tuple[str, float], ...] = ()
    if not timer.attempts:
        observations = ((FIRST_ATTEMPT_SECONDS, (event.occurred_at - timer.contact_ended_at).total_seconds()),)
    timer = timer._replace(attempts=(*timer.attempts, Attempt(event.event_id, event.occurred_at,
                                                             event.attempt_result, event.channel)),
                           failed_attempts=timer.failed_attempts + (event.attempt_result in NOT_REACHED))
    if event.attempt_result is AttemptResult.REACHED:
        if timer.reached_at is None:
            timer = timer._replace(reached_at=event.occurred_at)
    elif event.attempt_result is AttemptResult.DECLINED:
        timer, completed = _end(timer, event.occurred_at, Linkage.DECLINED)
        events.append(completed)
    elif timer.reached_at is None:
        if timer.failed_attempts >= len(timer.due_at):
            timer = timer._replace(status="dropped_out", ended_at=event.occurred_at)
            events.append(_event(timer, "followup.dropped_out", event.occurred_at))
        else:
            events.append(_due(timer, timer.failed_attempts + 1, event.occurred_at))
    return Step(timer, tuple(events), observations=observations)


def record_completion(timer: FollowupTimer, event: FollowupCompleted) -> Step[FollowupTimer]:
    """The follow-up ended with the person linked to care (or needing none, or declining)."""
    timer, events = advance(timer, event.occurred_at)
    if not timer.open:
        return Step(timer, tuple(events), notes=("followup_after_end",))
    timer, completed = _end(timer, event.occurred_at, event.linkage)
    return Step(timer, (*events, completed))


class Followup:
    """The ``followup`` timer kind (see the module docstring)."""

    name = KIND
    event_types = frozenset({"call.closed", "followup.attempted", "followup.completed"})
    needs_decision_for = frozenset({"call.closed"})
    notes = NOTES

    def __init__(self, policy: Policy) -> None:
        self.settings = policy.followup

    def on_event(self, state: FollowupTimer | None, event: CallEvent, context: TimerContext) -> Step[FollowupTimer]:
        match event:
            case CallClosed() if state is None:
                if context.decision is None:
                    return Step(None, notes=("close_without_decision",))
                timer = schedule_for(event, context.decision, self.settings)
                if timer is None:
                    return Step(None)
                return Step(timer, (_due(timer, 1, event.occurred_at),), started=True)
            case FollowupAttempted() | FollowupCompleted() if state is None:
                return Step(None, notes=("followup_without_schedule",))
            case FollowupAttempted() if state is not None:
                return record_attempt(state, event)
            case FollowupCompleted() if state is not None:
                return record_completion(state, event)
        return Step(state)  # a second close of the same call changes nothing: one schedule per contact

    def advance(self, state: FollowupTimer, now: datetime) -> Step[FollowupTimer]:
        advanced, events = advance(state, now)
        return Step(advanced, tuple(events))

    def next_deadline(self, state: FollowupTimer) -> datetime | None:
        return state.next_deadline

    def encode(self, state: FollowupTimer) -> dict[str, Any]:
        data = state._asdict()
        data["contact"] = state.contact.value
        data["due_at"] = list(state.due_at)
        data["attempts"] = [{"event_id": a.event_id, "attempted_at": a.attempted_at, "result": a.result.value,
                             "channel": a.channel.value} for a in state.attempts]
        data["linkage"] = state.linkage.value if state.linkage is not None else None
        return data

    def decode(self, data: Mapping[str, Any]) -> FollowupTimer:
        return FollowupTimer(
            call_id=data["call_id"], contact=Contact(data["contact"]),
            contact_ended_at=stored_time(data["contact_ended_at"]), disposition=data["disposition"],
            due_at=tuple(stored_time(due) for due in data["due_at"]),
            overdue_grace_seconds=data["overdue_grace_seconds"], expires_at=stored_time(data["expires_at"]),
            person_ref=data["person_ref"], district=data["district"], center_id=data["center_id"],
            attempts=tuple(Attempt(a["event_id"], stored_time(a["attempted_at"]), AttemptResult(a["result"]),
                                   Channel(a["channel"])) for a in data["attempts"]),
            failed_attempts=data["failed_attempts"], overdue_announced=data["overdue_announced"],
            reached_at=stored_optional_time(data["reached_at"]),
            status=data["status"], ended_at=stored_optional_time(data["ended_at"]),
            linkage=Linkage(data["linkage"]) if data["linkage"] is not None else None,
        )
