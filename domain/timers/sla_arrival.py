"""Co-responder arrival timers (kind ``sla_arrival``): pure timer arithmetic, no I/O, no clock of its own.

A timer starts when a decision requests the co-responder team (first or second response). It
warns once the warning deadline has passed, breaches once the breach deadline has passed, and
stops on the first co-responder arrival (met, or late arrival after a breach) or when the call
closes. Every function takes the current time as an argument: the caller decides whether that is
the wall clock (live) or the event-time watermark (replay), so both give the same answers.

A deadline counts as passed only when the time is strictly after it: an arrival at exactly the
deadline meets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from domain.policy import Policy
from domain.timers.kind import Step, TimerContext, stored_optional_time
from domain.triage import deterministic_id
from schemas.calls import CallClosed, CallEvent, CallReceived, TriageOverridden, UnitArrived, UnitDispatched, UnitType
from schemas.sla import Response, SlaEvent, SlaEventType
from schemas.triage import Route, TriageDecision

KIND = "sla_arrival"
NOTES = ("arrival_without_timer", "duplicate_arrival", "arrival_after_close", "dispatch_without_timer",
         "arrival_before_dispatch")


class SlaTimer(NamedTuple):
    """The state of one call's co-responder arrival timer (immutable; ``_replace`` makes the next)."""

    call_id: str
    response: Response
    requested_at: datetime
    warning_at: datetime
    breach_at: datetime
    district: str | None = None
    warned: bool = False
    breached: bool = False
    dispatched_at: datetime | None = None
    arrived_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def running(self) -> bool:
        """Still waiting for the team: neither arrived, closed nor breached."""
        return self.arrived_at is None and self.closed_at is None and not self.breached

    @property
    def next_deadline(self) -> datetime | None:
        if not self.running:
            return None
        return self.breach_at if self.warned else self.warning_at


def timer_for(decision: TriageDecision, policy: Policy) -> SlaTimer | None:
    """The timer a decision starts, or ``None`` when it does not request the co-responder team."""
    if decision.route is Route.CO_RESPONDER:
        response = Response.FIRST
    elif decision.second_response_requested:
        response = Response.SECOND
    else:
        return None
    settings = policy.sla[response]
    return SlaTimer(
        call_id=decision.call_id,
        response=response,
        requested_at=decision.decided_at,
        warning_at=decision.decided_at + settings.warning_after,
        breach_at=decision.decided_at + settings.breach_after,
        district=decision.district,
    )


def _event(timer: SlaTimer, kind: SlaEventType, deadline: datetime, occurred_at: datetime) -> SlaEvent:
    arrival_seconds = None
    if kind in ("sla.met", "sla.late_arrival"):
        arrival_seconds = (occurred_at - timer.requested_at).total_seconds()
    return SlaEvent(
        type=kind,
        # One warning, one breach and one arrival per timer: the id names the timer and the step.
        # UTC: the same instant read back from Postgres must give the same id.
        event_id=deterministic_id(kind, timer.call_id, timer.response, timer.requested_at.astimezone(UTC).isoformat()),
        call_id=timer.call_id,
        response=timer.response,
        requested_at=timer.requested_at,
        deadline_at=deadline,
        occurred_at=occurred_at,
        arrival_seconds=arrival_seconds,
        district=timer.district,
    )


def advance(timer: SlaTimer, now: datetime) -> tuple[SlaTimer, list[SlaEvent]]:
    """Fire whatever deadlines have passed by ``now``; returns the new state and the events."""
    events: list[SlaEvent] = []
    if timer.running and not timer.warned and now > timer.warning_at:
        timer = timer._replace(warned=True)
        events.append(_event(timer, "sla.warning", timer.warning_at, timer.warning_at))
    if timer.running and now > timer.breach_at:
        timer = timer._replace(breached=True)
        events.append(_event(timer, "sla.breached", timer.breach_at, timer.breach_at))
    return timer, events


def record_dispatch(timer: SlaTimer, dispatched_at: datetime) -> SlaTimer:
    """The first co-responder dispatch is kept (dispatch delay); deadlines still run from the request."""
    if timer.dispatched_at is not None:
        return timer
    return timer._replace(dispatched_at=dispatched_at)


def record_arrival(timer: SlaTimer, arrived_at: datetime) -> tuple[SlaTimer, list[SlaEvent]]:
    """The first co-responder arrival stops the timer; later arrivals change nothing."""
    if timer.arrived_at is not None or timer.closed_at is not None:
        return timer, []
    timer, events = advance(timer, arrived_at)
    kind: SlaEventType = "sla.late_arrival" if timer.breached else "sla.met"
    timer = timer._replace(arrived_at=arrived_at)
    return timer, [*events, _event(timer, kind, timer.breach_at, arrived_at)]


def record_close(timer: SlaTimer, closed_at: datetime) -> tuple[SlaTimer, list[SlaEvent]]:
    """A closed call cancels its timer, after firing what was already due before the close.

    A close older than the request belongs to an earlier request (a replayed event): ignored.
    """
    if timer.arrived_at is not None or timer.closed_at is not None or closed_at < timer.requested_at:
        return timer, []
    timer, events = advance(timer, closed_at)
    return timer._replace(closed_at=closed_at), events


_TIMES = ("requested_at", "warning_at", "breach_at", "dispatched_at", "arrived_at", "closed_at")


class SlaArrival:
    """The ``sla_arrival`` timer kind: co-responder arrival deadlines, first and second response."""

    name = KIND
    event_types = frozenset({"call.received", "triage.overridden", "unit.dispatched", "unit.arrived", "call.closed"})
    needs_decision_for = frozenset({"call.received", "triage.overridden"})
    notes = NOTES

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def on_event(self, state: SlaTimer | None, event: CallEvent, context: TimerContext) -> Step[SlaTimer]:
        match event:
            case CallReceived() | TriageOverridden() if context.decision is not None:
                return self._on_decision(state, event, context.decision)
            case UnitDispatched(unit_type=UnitType.CO_RESPONDER):
                if state is None:
                    return Step(None, notes=("dispatch_without_timer",))
                return Step(record_dispatch(state, event.occurred_at))
            case UnitArrived(unit_type=UnitType.CO_RESPONDER):
                return self._on_arrival(state, event)
            case CallClosed() if state is not None:
                closed, events = record_close(state, event.occurred_at)
                return Step(closed, tuple(events))
        return Step(state)

    def _on_decision(self, state: SlaTimer | None, event: CallEvent, decision: TriageDecision) -> Step[SlaTimer]:
        events: list[SlaEvent] = []
        if (isinstance(event, TriageOverridden) and state is not None and state.response is Response.FIRST
                and decision.route is not Route.CO_RESPONDER):
            # The team is no longer wanted as first responder: stop waiting for it.
            state, events = record_close(state, event.occurred_at)
        wanted = timer_for(decision, self.policy)
        # One timer per request: a replayed decision never restarts it, nor does a new request
        # while the team is still awaited.
        if wanted is None or (state is not None and (state.closed_at is None
                                                     or state.requested_at == wanted.requested_at)):
            return Step(state, tuple(events))
        return Step(wanted, tuple(events), started=True)

    @staticmethod
    def _on_arrival(state: SlaTimer | None, event: UnitArrived) -> Step[SlaTimer]:
        if state is None:
            return Step(None, notes=("arrival_without_timer",))
        if state.arrived_at is not None:
            return Step(state, notes=("duplicate_arrival",))
        if state.closed_at is not None:
            return Step(state, notes=("arrival_after_close",))
        # Still met or late without a dispatch: the team is there; the CAD's dispatch came late or never.
        notes = ("arrival_before_dispatch",) if state.dispatched_at is None else ()
        new_state, events = record_arrival(state, event.occurred_at)
        return Step(new_state, tuple(events), notes)

    def advance(self, state: SlaTimer, now: datetime) -> Step[SlaTimer]:
        advanced, events = advance(state, now)
        return Step(advanced, tuple(events))

    def next_deadline(self, state: SlaTimer) -> datetime | None:
        return state.next_deadline

    def encode(self, state: SlaTimer) -> dict[str, Any]:
        data = state._asdict()
        data["response"] = state.response.value
        return data

    def decode(self, data: Mapping[str, Any]) -> SlaTimer:
        fields = dict(data)
        fields["response"] = Response(fields["response"])
        for name in _TIMES:
            fields[name] = stored_optional_time(fields.get(name))
        return SlaTimer(**fields)
