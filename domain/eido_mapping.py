"""A NENA EIDO document mapped to our lifecycle events, for one authenticated center. Pure.

EIDO field (NENA-STA-021.1b) -> our event:

- call id ``<center_id>:<n>``, ``n`` = ``incidentComponent.internalIncidentId``, else the Incident
  Tracking Identifier (the header's ``$id``; the 2020 sample's ``incidentTrackingIdentifier``);
- ``call.received`` at the earliest incoming ``callComponent.callStartTimestamp`` (else the
  incident's ``lastUpdateTimeStamp``); ``nature_code`` = ``incidentTypeInternalCode`` (else the
  common type), ``incident_type_common`` = ``incidentTypeCommonRegistryText`` (APCO),
  ``district`` = ``beatOrDispatchGroupText`` (``unknown`` without one),
  ``person_in_crisis_is_caller`` when one ``personComponent`` is both ``Caller`` and ``Patient``,
  ``caller_phone`` = the first ``tel:`` URI of the call's ``callBackReference`` (internal only);
- each ``emergencyResourceComponent``: secondary status ``Arrived``/``OnScene``/``PatientContact``
  -> ``unit.arrived``, else ``Dispatched``/``Assigned``/``AcknowledgedTransmission``/``EnRoute``
  -> ``unit.dispatched``, at its ``lastUpdateTimeStamp``; type ``CrisisInterventionUnit`` or
  attribute ``CrisisInterventionSpecialist`` -> ``co_responder``, law-enforcement types ->
  ``police``, any other -> ``ems``;
- ``incidentStatusCommonRegistryText`` ``Closed``/``Cancelled`` -> ``call.closed`` with the
  primary ``dispositionCommonRegistryCode`` (``domain.apco.DISPOSITIONS``; cancelled without one).

An EIDO is a snapshot and is sent again as the incident changes, so event ids carry no times:
``<call_id>:received``, ``<call_id>:dispatched:<unit>``, ``<call_id>:arrived:<unit>``,
``<call_id>:closed``. The first document that reports a step decides its time; later snapshots
repeating it are stored nothing twice (a reclassified incident type after the first
``call.received`` is not re-triaged: a dispatcher override does that).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pydantic import ValidationError

from domain import apco
from domain.call_ids import lifecycle_event_id, scoped_call_id
from schemas.calls import CallClosed, CallReceived, Disposition, UnitArrived, UnitDispatched, UnitType
from schemas.eido import EidoDocument, EidoEmergencyResource

MappedEvent = CallReceived | UnitDispatched | UnitArrived | CallClosed

DISPATCHED_STATUSES: Final = frozenset({"dispatched", "assigned", "acknowledgedtransmission", "enroute"})
ARRIVED_STATUSES: Final = frozenset({"arrived", "onscene", "patientcontact"})
CLOSED_STATUSES: Final = frozenset({"closed", "cancelled"})
CO_RESPONDER_TYPES: Final = frozenset({"crisisinterventionunit"})
CO_RESPONDER_ATTRIBUTES: Final = frozenset({"crisisinterventionspecialist"})
# EIDO-EmergencyResourceType-Common values of law enforcement.
POLICE_TYPES: Final = frozenset({
    "patrolunit", "lawenforcementcommandunit", "schoolofficer", "crowdcontrolteam", "mountedpatrol", "swat",
    "trafficunit", "transitofficer", "bombsquad", "investigator", "civilserviceofficer",
})
UNKNOWN_DISTRICT = "unknown"


@dataclass(frozen=True)
class FieldProblem:
    """Why part of a document cannot be mapped, named by its EIDO field path."""

    field: str
    message: str


class EidoMappingError(ValueError):
    """The document is valid EIDO but cannot be mapped to our events; ``problems`` names every field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def map_eido(document: EidoDocument, center_id: str) -> list[MappedEvent]:
    """The lifecycle events ``document`` describes for ``center_id``, in time order; ``EidoMappingError``
    lists every field that prevents it."""
    problems: list[FieldProblem] = []
    incident = document.incident
    if incident is None:
        raise EidoMappingError([FieldProblem(
            "incidentComponent", "required: without the incident (its type) there is no call to triage")])
    number = incident.internal_incident_id or document.tracking_id or document.id
    call_id = scoped_call_id(center_id, number)
    incoming = [call for call in document.calls if call.direction in (None, "incoming")] or list(document.calls)
    first_call = min(incoming, key=lambda call: call.start_at, default=None)
    received_at = first_call.start_at if first_call is not None else incident.last_update_at
    body: dict[str, object] = {
        "type": "call.received",
        "event_id": lifecycle_event_id(call_id, "received"),
        "call_id": call_id,
        "occurred_at": received_at,
        "center_id": center_id,
        "nature_code": incident.type_internal_code or incident.type_common,
        "incident_type_common": incident.type_common,
        "district": incident.beat or UNKNOWN_DISTRICT,
        "person_in_crisis_is_caller": any(
            {"caller", "patient"} <= {role.lower() for role in person.roles} for person in document.persons),
    }
    if first_call is not None and first_call.callback is not None:
        phone = _callback_phone(document, first_call.callback.ref, problems)
        if phone is not None:
            body["caller_phone"] = phone
    events: list[MappedEvent] = []
    try:
        events.append(CallReceived.model_validate(body))
    except ValidationError as exc:
        problems += [FieldProblem(_EIDO_FIELD.get(str(err["loc"][0]), str(err["loc"][0])), err["msg"])
                     for err in exc.errors(include_url=False, include_input=False)]
    for index, resource in enumerate(document.resources):
        events += _unit_events(call_id, resource, f"emergencyResourceComponent[{index}]", problems)
    closed = _close(document, call_id, problems)
    if closed is not None:
        events.append(closed)
    if problems:
        raise EidoMappingError(problems)
    return sorted(events, key=lambda e: (e.occurred_at, _ORDER[e.type]))


_ORDER = {"call.received": 0, "unit.dispatched": 1, "unit.arrived": 2, "call.closed": 3}
# Our field -> the EIDO field it came from, to name it in errors.
_EIDO_FIELD = {
    "call_id": "incidentComponent.internalIncidentId",
    "event_id": "incidentComponent.internalIncidentId",
    "nature_code": "incidentComponent.incidentTypeInternalCode",
    "incident_type_common": "incidentComponent.incidentTypeCommonRegistryText",
    "district": "incidentComponent.beatOrDispatchGroupText",
    "caller_phone": "callbackComponent.callBackInformationUri",
    "unit_id": "emergencyResourceComponent.emergencyResourceName",
}


def _callback_phone(document: EidoDocument, ref: str, problems: list[FieldProblem]) -> str | None:
    callback = next((c for c in document.callbacks if c.id == ref), None)
    if callback is None:
        problems.append(FieldProblem("callComponent.callBackReference",
                                     f"refers to {ref!r}, which no callbackComponent has as $id"))
        return None
    for uri in callback.uris:
        if uri.lower().startswith("tel:"):
            number = uri[4:].split(";", 1)[0].strip()
            return number or None
    return None


def unit_type_of(resource: EidoEmergencyResource) -> UnitType:
    """Co-responder for a crisis intervention unit or specialist, police for law-enforcement types, else EMS."""
    attributes = {attribute.lower() for attribute in resource.attributes}
    kind = resource.type_common.lower()
    if kind in CO_RESPONDER_TYPES or attributes & CO_RESPONDER_ATTRIBUTES:
        return UnitType.CO_RESPONDER
    if kind in POLICE_TYPES:
        return UnitType.POLICE
    return UnitType.EMS


def _unit_events(call_id: str, resource: EidoEmergencyResource, where: str,
                 problems: list[FieldProblem]) -> list[MappedEvent]:
    statuses = {status.lower() for status in resource.secondary_status}
    unit_id = resource.name or resource.id
    if len(unit_id) > 64:
        problems.append(FieldProblem(f"{where}.emergencyResourceName",
                                     "a unit id of at most 64 characters is needed (the $id is longer)"))
        return []
    unit_type = unit_type_of(resource)
    at: datetime = resource.last_update_at
    if statuses & ARRIVED_STATUSES:
        return [UnitArrived(event_id=lifecycle_event_id(call_id, "arrived", unit_id), call_id=call_id,
                            occurred_at=at, unit_id=unit_id, unit_type=unit_type)]
    if statuses & DISPATCHED_STATUSES:
        return [UnitDispatched(event_id=lifecycle_event_id(call_id, "dispatched", unit_id), call_id=call_id,
                               occurred_at=at, unit_id=unit_id, unit_type=unit_type)]
    return []  # available, cleared, cancelled...: no lifecycle step of ours


def _close(document: EidoDocument, call_id: str, problems: list[FieldProblem]) -> CallClosed | None:
    incident = document.incident
    assert incident is not None
    statuses = {status.lower() for status in incident.status_common}
    if not statuses & CLOSED_STATUSES:
        return None
    chosen = next((d for d in incident.dispositions if d.primary), incident.dispositions[0] if incident.dispositions
                  else None)
    if chosen is None:
        if "cancelled" in statuses:
            return CallClosed(event_id=lifecycle_event_id(call_id, "closed"), call_id=call_id,
                              occurred_at=incident.last_update_at, disposition=Disposition.CANCELLED)
        problems.append(FieldProblem("incidentComponent.dispositionComponent",
                                     "a closed incident needs a dispositionCommonRegistryCode to map call.closed"))
        return None
    disposition = apco.disposition_for(chosen.code)
    if disposition is None:
        problems.append(FieldProblem("incidentComponent.dispositionComponent.dispositionCommonRegistryCode",
                                     f"{chosen.code!r} has no crisis-program outcome (mapped codes: "
                                     f"{', '.join(sorted(apco.DISPOSITIONS))})"))
        return None
    return CallClosed(event_id=lifecycle_event_id(call_id, "closed"), call_id=call_id,
                      occurred_at=chosen.last_update_at, disposition=disposition)
