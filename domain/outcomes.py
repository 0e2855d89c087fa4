"""Outcome aggregates as pure arithmetic: one call's facts, folded from its events, and what they count.

Every call has one ``CallFacts`` row: what its events said so far (routes, the team's dispatch and
arrival, the close, the SLA outcome, the follow-up). ``contributions`` turns a call's facts into the
counts it adds to the daily aggregates, keyed by (center, local day, local hour, district, route,
measure). When an event changes a call, the aggregates change by ``contributions(after) -
contributions(before)``: a late arrival moves the call from "unserved" to "served" on the day the
call belongs to, and an event that changes nothing adds nothing.

The fold is commutative: the first dispatch, arrival, close or SLA outcome is the earliest by event
time, whatever order the events arrive in. It is not idempotent by itself (attempts are counted),
so it is fed only events stored for the first time, which the store knows exactly
(``INSERT ... ON CONFLICT DO NOTHING RETURNING``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain.outcome_definitions import (
    CUSTODY_GROUPS,
    HOSPITAL_GROUPS,
    PROGRAM_ROUTES,
    TEAM_ROUTES,
    UNSERVED_REASONS,
    DispositionGroup,
    ProgramRoute,
    Status,
    closed_program_route,
    disposition_group,
    is_behavioral_health,
    route_of,
    service,
)
from schemas.calls import (
    AttemptResult,
    CallClosed,
    Disposition,
    FollowupAttempted,
    FollowupCompleted,
    Linkage,
    UnitArrived,
    UnitDispatched,
    UnitType,
)
from schemas.followups import FollowupEvent
from schemas.sla import Response, SlaEvent
from schemas.triage import TriageDecision

# (center_id, local day, local hour, district, route, measure)
Key = tuple[str, date, int, str, str, str]
OutcomeInput = TriageDecision | UnitDispatched | UnitArrived | CallClosed | FollowupAttempted | FollowupCompleted \
    | SlaEvent | FollowupEvent

FOLLOWUP_STATUSES = ("open", "completed", "declined", "dropped_out", "expired")
# HEDIS-style windows: a follow-up completed within this many days of the end of the contact.
FOLLOWUP_WINDOWS = (("48h", 2.0), ("7d", 7.0), ("30d", 30.0))
COMPLETED_LINKAGES = tuple(linkage.value for linkage in Linkage if linkage is not Linkage.DECLINED)
RESPONSES = tuple(response.value for response in Response)

# Every measure the aggregates hold: a closed set (the report's rows, the feed's fields).
MEASURES: tuple[str, ...] = (
    "calls", "behavioral_health",
    *(f"route:{route.value}" for route in ProgramRoute),
    "eligible", *(f"status:{status.value}" for status in Status),
    *(f"unserved:{reason}" for reason in UNSERVED_REASONS),
    "transferred", "resolved_without_field_unit",
    "team_requested", "team_dispatched", "team_arrived",
    "closed", *(f"disposition:{group.value}" for group in DispositionGroup),
    "served_closed", "diverted_from_jail", "diverted_from_hospital", "police_backup",
    *(f"sla_{what}:{response}" for response in RESPONSES for what in ("requests", "met", "breached")),
    "followup_contacts", *(f"followup_status:{status}" for status in FOLLOWUP_STATUSES),
    *(f"followup_completed_{window}" for window, _ in FOLLOWUP_WINDOWS),
    "followup_attempts", "followup_reached", *(f"linkage:{linkage}" for linkage in COMPLETED_LINKAGES),
)


@dataclass(frozen=True)
class CallFacts:
    """What one call's events said so far (one row of ``outcome_calls``)."""

    call_id: str
    center_id: str | None = None
    district: str | None = None
    received_at: datetime | None = None
    person_ref: str | None = None  # pseudonymous; for repeat contacts only, never reported
    behavioral_health: bool = False
    program_route: str | None = None  # the first program route the call got (ProgramRoute)
    program_route_at: datetime | None = None
    routed: bool = False  # a decision really put it on a program route (not only a closed one)
    current_route: str | None = None  # the latest decision's route (ProgramRoute)
    current_at: datetime | None = None
    team_requested_at: datetime | None = None
    team_response: str | None = None  # first / second
    team_dispatched_at: datetime | None = None
    team_arrived_at: datetime | None = None
    field_unit_dispatched: bool = False
    field_unit_arrived: bool = False
    police_dispatched_at: datetime | None = None
    closed_at: datetime | None = None
    disposition: str | None = None
    cad_unserved_reason: str | None = None
    sla_outcome: str | None = None  # met / breached: the first judged request
    sla_outcome_at: datetime | None = None
    followup_contact_ended_at: datetime | None = None
    followup_status: str | None = None
    followup_ended_at: datetime | None = None
    followup_days: float | None = None
    followup_linkage: str | None = None
    followup_attempts: int = 0
    followup_reached: bool = False


FACT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CallFacts))
_EMPTY_FACTS: dict[str, Any] = {f.name: f.default for f in fields(CallFacts) if f.name != "call_id"}


def _earlier(candidate: datetime, current: datetime | None) -> bool:
    return current is None or candidate < current


def _decision(facts: Any, decision: TriageDecision) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if decision.type == "triage.decided" and facts.received_at is None:
        changes.update(center_id=decision.center_id, district=decision.district, received_at=decision.decided_at,
                       person_ref=decision.person_ref, behavioral_health=is_behavioral_health(decision))
    route = route_of(decision)
    program = route if route is not ProgramRoute.NOT_ELIGIBLE else closed_program_route(decision)
    if program is not None and _earlier(decision.decided_at, facts.program_route_at):
        changes.update(program_route=program.value, program_route_at=decision.decided_at)
    if route is not ProgramRoute.NOT_ELIGIBLE:
        changes["routed"] = True
    # The latest decision is the current one; an override at the same instant replaces the rules'.
    if (facts.current_at is None or decision.decided_at > facts.current_at
            or (decision.decided_at == facts.current_at and decision.type == "triage.overridden")):
        changes.update(current_route=route.value, current_at=decision.decided_at)
    if route in TEAM_ROUTES and _earlier(decision.decided_at, facts.team_requested_at):
        changes.update(team_requested_at=decision.decided_at,
                       team_response="first" if route is ProgramRoute.CO_RESPONDER else "second")
    return changes


def _followup(facts: Any, event: FollowupEvent) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if facts.followup_contact_ended_at is None:
        changes["followup_contact_ended_at"] = event.contact_ended_at
    if event.type == "followup.due" and facts.followup_status is None:
        changes["followup_status"] = "open"
    ended = {"followup.completed": "completed", "followup.dropped_out": "dropped_out",
             "followup.expired": "expired"}.get(event.type)
    if ended is not None and _earlier(event.occurred_at, facts.followup_ended_at):
        if ended == "completed" and event.linkage is Linkage.DECLINED:
            ended = "declined"
        changes.update(followup_status=ended, followup_ended_at=event.occurred_at,
                       followup_days=event.days_from_contact if ended == "completed" else None,
                       followup_linkage=event.linkage.value if ended == "completed" and event.linkage else None)
    if event.type == "followup.completed":
        changes["followup_reached"] = True
    return changes


def _changes(facts: Any, item: OutcomeInput) -> dict[str, Any]:
    """What one event changes in its call's facts (``facts``: a ``CallFacts`` or a working copy of one)."""
    match item:
        case TriageDecision():
            return _decision(facts, item)
        case UnitDispatched():
            changes: dict[str, Any] = {"field_unit_dispatched": True}
            if item.unit_type is UnitType.CO_RESPONDER and _earlier(item.occurred_at, facts.team_dispatched_at):
                changes["team_dispatched_at"] = item.occurred_at
            if item.unit_type is UnitType.POLICE and _earlier(item.occurred_at, facts.police_dispatched_at):
                changes["police_dispatched_at"] = item.occurred_at
            return changes
        case UnitArrived():
            changes = {"field_unit_arrived": True}
            if item.unit_type is UnitType.CO_RESPONDER and _earlier(item.occurred_at, facts.team_arrived_at):
                changes["team_arrived_at"] = item.occurred_at
            return changes
        case CallClosed():
            if not _earlier(item.occurred_at, facts.closed_at):
                return {}
            return {"closed_at": item.occurred_at, "disposition": item.disposition.value,
                    "cad_unserved_reason": item.unserved_reason.value if item.unserved_reason else None}
        case FollowupAttempted():
            reached = item.attempt_result in (AttemptResult.REACHED, AttemptResult.DECLINED)
            return {"followup_attempts": facts.followup_attempts + 1,
                    "followup_reached": facts.followup_reached or reached}
        case SlaEvent():
            outcome = {"sla.met": "met", "sla.breached": "breached", "sla.late_arrival": "breached"}.get(item.type)
            if outcome is None or not _earlier(item.occurred_at, facts.sla_outcome_at):
                return {}
            return {"sla_outcome": outcome, "sla_outcome_at": item.occurred_at}
        case FollowupEvent():
            return _followup(facts, item)
    return {}  # followup.completed from the CAD: the follow-up timer's own event carries its outcome


# Timer events that never change a call's facts: a warning precedes the outcome it warns of, and an
# overdue attempt changes no status. Skipping them spares the fold reading their calls' facts (on the
# wall-clock timer path they are a third of all events).
NO_OUTCOME_TYPES = frozenset({"sla.warning", "followup.overdue"})


def apply(facts: CallFacts, item: OutcomeInput) -> CallFacts:
    """One event (stored for the first time) applied to its call's facts."""
    changes = _changes(facts, item)
    return replace(facts, **changes) if changes else facts


def apply_all(facts: Mapping[str, CallFacts], items: Iterable[OutcomeInput]) -> dict[str, CallFacts]:
    """The facts of every call ``items`` touch, after applying them (calls without facts yet start empty).

    Same result as ``apply`` one event after the other, but each call is copied once and changed in
    place while nobody else holds the copy: a frozen copy per event (31 fields each) was most of the
    cost at thousands of events per batch. The facts given are never changed.
    """
    working: dict[str, CallFacts] = {}
    for item in items:
        current = working.get(item.call_id)
        if current is None:
            base = facts.get(item.call_id)
            current = working[item.call_id] = facts_from_mapping(
                base.__dict__ if base is not None else {**_EMPTY_FACTS, "call_id": item.call_id})
        changes = _changes(current, item)
        if changes:
            current.__dict__.update(changes)  # the fold's own copy (see above)
    return working


def facts_from_mapping(values: Mapping[str, Any]) -> CallFacts:
    """``CallFacts`` from a mapping holding exactly its fields (a stored row), without 31 frozen setattrs."""
    facts = object.__new__(CallFacts)
    facts.__dict__.update(values)
    return facts


def contributions(facts: CallFacts, zone: ZoneInfo) -> Counter[Key]:
    """What one call adds to the daily aggregates: nothing until its ``call.received`` was stored."""
    counted = _counted(facts, zone)
    if counted is None:
        return Counter()
    base, measures = counted
    return Counter({(*base, measure): n for measure, n in measures.items()})


def _counted(facts: CallFacts, zone: ZoneInfo) -> tuple[tuple[str, date, int, str, str], dict[str, int]] | None:
    """The call's key without its measure, and what it counts under each measure (None: nothing yet)."""
    if facts.received_at is None or facts.center_id is None:
        return None
    local = facts.received_at.astimezone(zone)
    route = _PROGRAM_ROUTE[facts.program_route] if facts.program_route else ProgramRoute.NOT_ELIGIBLE
    measures: dict[str, int] = {}

    def add(measure: str, n: int = 1) -> None:
        measures[measure] = n  # each measure is added once per call

    add("calls")
    if facts.behavioral_health:
        add("behavioral_health")
    add(f"route:{route.value}")
    if route in PROGRAM_ROUTES:
        _eligible(facts, route, add)
    if facts.followup_contact_ended_at is not None:
        _followups(facts, add)
    return (facts.center_id, local.date(), local.hour, facts.district or "", route.value), measures


_PROGRAM_ROUTE = {route.value: route for route in ProgramRoute}


def _eligible(facts: CallFacts, route: ProgramRoute, add: Any) -> None:
    current = _PROGRAM_ROUTE[facts.current_route] if facts.current_route else route
    closed = facts.closed_at is not None
    result = service(current, not facts.routed, facts.team_dispatched_at is not None,
                     facts.team_arrived_at is not None, closed, facts.disposition, facts.cad_unserved_reason)
    add("eligible")
    add(f"status:{result.status.value}")
    if result.reason is not None:
        add(f"unserved:{result.reason}")
    if route is ProgramRoute.DIVERSION_LINE:
        add("transferred")
        if (result.status is Status.SERVED and current is ProgramRoute.DIVERSION_LINE
                and not facts.field_unit_dispatched):
            add("resolved_without_field_unit")
    if facts.team_requested_at is not None:
        add("team_requested")
        if facts.team_dispatched_at is not None or facts.team_arrived_at is not None:
            add("team_dispatched")  # an arrival the CAD reported without a dispatch was dispatched all the same
        if facts.team_arrived_at is not None:
            add("team_arrived")
    if closed and facts.disposition is not None:
        group = disposition_group(Disposition(facts.disposition), facts.field_unit_arrived)
        add("closed")
        add(f"disposition:{group.value}")
        if result.status is Status.SERVED:
            add("served_closed")
            if group not in CUSTODY_GROUPS:
                add("diverted_from_jail")
            if group not in HOSPITAL_GROUPS:
                add("diverted_from_hospital")
    on_program = {ProgramRoute.DIVERSION_LINE, ProgramRoute.CO_RESPONDER}
    if facts.police_dispatched_at is not None and route in on_program and current in on_program:
        add("police_backup")
    if facts.team_response is not None:
        add(f"sla_requests:{facts.team_response}")
        if facts.sla_outcome is not None:
            add(f"sla_{facts.sla_outcome}:{facts.team_response}")


def _followups(facts: CallFacts, add: Any) -> None:
    status = facts.followup_status or "open"
    add("followup_contacts")
    add(f"followup_status:{status}")
    if status == "completed":
        for window, days in FOLLOWUP_WINDOWS:
            if facts.followup_days is not None and facts.followup_days <= days:
                add(f"followup_completed_{window}")
        if facts.followup_linkage is not None:
            add(f"linkage:{facts.followup_linkage}")
    if facts.followup_attempts:
        add("followup_attempts", facts.followup_attempts)
    if facts.followup_reached or status in ("completed", "declined"):
        add("followup_reached")


def deltas(before: Mapping[str, CallFacts], after: Mapping[str, CallFacts], zone: ZoneInfo) -> Counter[Key]:
    """How the aggregates change when the calls in ``after`` go from ``before`` to ``after`` (zeros dropped)."""
    change: dict[Key, int] = {}

    def add(base: tuple[str, date, int, str, str], measures: Mapping[str, int], sign: int) -> None:
        for measure, n in measures.items():
            key = (*base, measure)
            change[key] = change.get(key, 0) + sign * n

    for call_id, new in after.items():
        old = before.get(call_id)
        if old == new:
            continue
        now, then = _counted(new, zone), _counted(old, zone) if old is not None else None
        if now is not None and then is not None and now[0] == then[0]:
            # Same day, hour, district and route (nearly always): only the measures that moved.
            (base, counted), previous = now, then[1]
            add(base, {m: counted.get(m, 0) - previous.get(m, 0) for m in counted.keys() | previous.keys()}, 1)
            continue
        if now is not None:
            add(*now, 1)
        if then is not None:
            add(*then, -1)
    return Counter({key: n for key, n in change.items() if n != 0})
