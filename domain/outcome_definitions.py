"""What the outcome reports count: routes, "served", unserved reasons, disposition groups, NEMSIS codes.

Pure definitions, no I/O. The README ("Reports and outcomes") states each one in words; the
aggregates (``domain.outcomes``), the reports and the partner feed all use these and only these.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from schemas.calls import Disposition, UnservedReason
from schemas.triage import Route, TriageDecision


class ProgramRoute(StrEnum):
    """Where a call went, as the funnel counts it: the program's three routes, or not eligible."""

    DIVERSION_LINE = "diversion_line"  # transferred to the crisis line (phone)
    CO_RESPONDER = "co_responder"  # the co-responder team as first response
    SECOND_RESPONSE = "second_response"  # police/EMS first, the team called as second response
    NOT_ELIGIBLE = "not_eligible"  # emergency without the team (or no behavioral-health concern)


PROGRAM_ROUTES = (ProgramRoute.DIVERSION_LINE, ProgramRoute.CO_RESPONDER, ProgramRoute.SECOND_RESPONSE)
TEAM_ROUTES = frozenset({ProgramRoute.CO_RESPONDER, ProgramRoute.SECOND_RESPONSE})
ROUTE_RESPONSE = {ProgramRoute.CO_RESPONDER: "first", ProgramRoute.SECOND_RESPONSE: "second"}


def route_of(decision: TriageDecision) -> ProgramRoute:
    """The funnel route one decision puts a call on."""
    if decision.route is Route.DIVERSION_LINE:
        return ProgramRoute.DIVERSION_LINE
    if decision.route is Route.CO_RESPONDER:
        return ProgramRoute.CO_RESPONDER
    if decision.second_response_requested:
        return ProgramRoute.SECOND_RESPONSE
    return ProgramRoute.NOT_ELIGIBLE


def closed_program_route(decision: TriageDecision) -> ProgramRoute | None:
    """The program route the rules wanted but found closed (``<route>_closed``) when they fell back to emergency.

    Such a call is eligible and unserved with reason ``outside_hours``: counting it as "not eligible"
    is how NYC's B-HEARD hid its overnight calls.
    """
    if route_of(decision) is not ProgramRoute.NOT_ELIGIBLE:
        return None
    for reason in decision.reasons:
        for route in (ProgramRoute.DIVERSION_LINE, ProgramRoute.CO_RESPONDER):
            if reason == f"{route.value}_closed":
                return route
    return None


def is_behavioral_health(decision: TriageDecision) -> bool:
    """Whether the rules saw a behavioral-health concern (they say so when there is none)."""
    return "no_behavioral_health_concern" not in decision.reasons


class Status(StrEnum):
    """Where an eligible call stands in the funnel."""

    SERVED = "served"
    UNSERVED = "unserved"
    OPEN = "open"  # not served yet and not closed: no reason can be given yet


class DerivedReason(StrEnum):
    """Unserved reasons the events show; the CAD's own (``schemas.calls.UnservedReason``) fill the rest."""

    OVERRIDDEN_BY_DISPATCHER = "overridden_by_dispatcher"
    OUTSIDE_HOURS = "outside_hours"
    CANCELLED_BEFORE_ARRIVAL = "cancelled_before_arrival"
    CLOSED_BEFORE_ARRIVAL = "closed_before_arrival"
    NEVER_DISPATCHED = "never_dispatched"
    CANCELLED_BEFORE_CONTACT = "cancelled_before_contact"
    NOT_REACHED = "not_reached"


# Every reason an unserved call can carry, derived ones first: a closed set (report rows, metric labels).
UNSERVED_REASONS: tuple[str, ...] = tuple(dict.fromkeys(
    [r.value for r in DerivedReason] + [r.value for r in UnservedReason]))


class Service(NamedTuple):
    status: Status
    reason: str | None = None


def service(current: ProgramRoute, hours_only: bool, team_dispatched: bool, team_arrived: bool, closed: bool,
            disposition: str | None, cad_reason: str | None) -> Service:
    """Whether an eligible call was served, and if not, why (see the README for the rules in words).

    ``current`` is the route of the call's latest decision (who should serve it now), ``hours_only``
    whether it reached the program only through a route that was closed (outside hours). Reasons the
    events show win over the CAD's ``unserved_reason``, which fills in only what events cannot show.
    """
    if team_arrived:
        return Service(Status.SERVED)
    if current is ProgramRoute.NOT_ELIGIBLE:
        return Service(Status.UNSERVED, DerivedReason.OUTSIDE_HOURS if hours_only
                       else DerivedReason.OVERRIDDEN_BY_DISPATCHER)
    if not closed:
        return Service(Status.OPEN)
    if current is ProgramRoute.DIVERSION_LINE:
        if disposition == Disposition.CANCELLED:
            return Service(Status.UNSERVED, cad_reason or DerivedReason.CANCELLED_BEFORE_CONTACT)
        if disposition == Disposition.UNABLE_TO_CONTACT:
            return Service(Status.UNSERVED, cad_reason or DerivedReason.NOT_REACHED)
        return Service(Status.SERVED)
    if team_dispatched:
        return Service(Status.UNSERVED, DerivedReason.CANCELLED_BEFORE_ARRIVAL if disposition == Disposition.CANCELLED
                       else DerivedReason.CLOSED_BEFORE_ARRIVAL)
    return Service(Status.UNSERVED, cad_reason or DerivedReason.NEVER_DISPATCHED)


class DispositionGroup(StrEnum):
    """The outcome groups reports show (B-HEARD, Vera, NEMSIS eDisposition)."""

    RESOLVED_BY_PHONE = "resolved_by_phone"
    STABILIZED_ON_SCENE = "stabilized_on_scene"
    COMMUNITY_LOCATION_OR_CRISIS_CENTER = "community_location_or_crisis_center"
    EMERGENCY_DEPARTMENT_VOLUNTARY = "emergency_department_voluntary"
    EMERGENCY_DEPARTMENT_INVOLUNTARY = "emergency_department_involuntary"
    TRANSPORTED_DESTINATION_NOT_RECORDED = "transported_destination_not_recorded"
    RELEASED_TO_LAW_ENFORCEMENT = "released_to_law_enforcement"
    ARRESTED = "arrested"
    DECLINED = "declined"
    UNABLE_TO_CONTACT = "unable_to_contact"
    CANCELLED = "cancelled"


D, G = Disposition, DispositionGroup
# Dispositions that say what was done but not where: on the phone when no unit reached the scene.
_PHONE_OR_SCENE = frozenset({D.SAFETY_PLAN, D.LINKED_TO_SERVICES, D.DIVERTED_FROM_JAIL, D.DIVERTED_FROM_HOSPITAL})
_GROUP: dict[Disposition, DispositionGroup] = {
    D.RESOLVED_BY_PHONE: G.RESOLVED_BY_PHONE,
    D.STABILIZED_ON_SCENE: G.STABILIZED_ON_SCENE,
    D.TRANSPORTED_TO_COMMUNITY_LOCATION: G.COMMUNITY_LOCATION_OR_CRISIS_CENTER,
    D.TRANSPORTED_TO_CRISIS_CENTER: G.COMMUNITY_LOCATION_OR_CRISIS_CENTER,
    D.TRANSPORTED_TO_EMERGENCY_DEPARTMENT: G.EMERGENCY_DEPARTMENT_VOLUNTARY,
    D.INVOLUNTARY_HOLD: G.EMERGENCY_DEPARTMENT_INVOLUNTARY,
    D.TRANSPORTED: G.TRANSPORTED_DESTINATION_NOT_RECORDED,
    D.RELEASED_TO_LAW_ENFORCEMENT: G.RELEASED_TO_LAW_ENFORCEMENT,
    D.ARRESTED: G.ARRESTED,
    D.RESOURCES_DECLINED: G.DECLINED,
    D.UNABLE_TO_CONTACT: G.UNABLE_TO_CONTACT,
    D.CANCELLED: G.CANCELLED,
}


def disposition_group(disposition: Disposition, on_scene: bool) -> DispositionGroup:
    """The group of a disposition; ``on_scene``: a field unit arrived (safety plans and linkage made there)."""
    if disposition in _PHONE_OR_SCENE:
        return G.STABILIZED_ON_SCENE if on_scene else G.RESOLVED_BY_PHONE
    return _GROUP[disposition]


CUSTODY_GROUPS = frozenset({G.ARRESTED, G.RELEASED_TO_LAW_ENFORCEMENT})
HOSPITAL_GROUPS = frozenset({G.EMERGENCY_DEPARTMENT_VOLUNTARY, G.EMERGENCY_DEPARTMENT_INVOLUNTARY,
                             G.TRANSPORTED_DESTINATION_NOT_RECORDED})


class Nemsis(NamedTuple):
    """A disposition's NEMSIS v3.5 codes: eDisposition.30 (transport) and, where one applies, eDisposition.31."""

    transport_code: str
    transport_label: str
    release_code: str | None = None
    release_label: str | None = None


_NOT_APPLICABLE = Nemsis("7701001", "Not Applicable")
_NO_TRANSPORT = Nemsis("4230013", "No Transport")
_THIS_UNIT = Nemsis("4230001", "Transport by This EMS Unit (This Crew Only)")
_OTHER_UNIT = Nemsis("4230005", "Transport by Another EMS Unit/Agency")
_TO_LAW = Nemsis("4230013", "No Transport", "4231007", "Released to Law Enforcement")

NEMSIS_TRANSPORT: dict[Disposition, Nemsis] = {
    D.RESOLVED_BY_PHONE: _NOT_APPLICABLE,  # no unit on scene: no EMS event to code
    D.STABILIZED_ON_SCENE: _NO_TRANSPORT,
    D.SAFETY_PLAN: _NO_TRANSPORT,
    D.DIVERTED_FROM_JAIL: _NO_TRANSPORT,
    D.DIVERTED_FROM_HOSPITAL: _NO_TRANSPORT,
    D.LINKED_TO_SERVICES: _NO_TRANSPORT,
    D.TRANSPORTED: _THIS_UNIT,
    D.TRANSPORTED_TO_COMMUNITY_LOCATION: _THIS_UNIT,
    D.TRANSPORTED_TO_CRISIS_CENTER: _THIS_UNIT,
    D.TRANSPORTED_TO_EMERGENCY_DEPARTMENT: _OTHER_UNIT,
    D.INVOLUNTARY_HOLD: _OTHER_UNIT,
    D.RELEASED_TO_LAW_ENFORCEMENT: _TO_LAW,
    D.ARRESTED: _TO_LAW,
    D.RESOURCES_DECLINED: Nemsis("4230009", "Patient Refused Transport"),
    D.UNABLE_TO_CONTACT: _NO_TRANSPORT,
    D.CANCELLED: _NOT_APPLICABLE,
}


def nemsis(disposition: Disposition) -> Nemsis:
    """The NEMSIS codes a disposition maps to (README: the table, with why)."""
    return NEMSIS_TRANSPORT[disposition]
