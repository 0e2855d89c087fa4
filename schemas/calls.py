"""Inbound lifecycle events of a 911 call, as the dispatch (CAD) integrations send them.

Every event travels on ``crisis.calls.v1`` keyed by ``call_id`` so that one call's events stay
in order on one partition. The ``type`` field selects the model (a pydantic discriminated union).
Field names are a contract with the CAD integrations: rename nothing without a new topic version.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from schemas.triage import Route

# MPDS determinant codes look like 25-A-1 or 25-B-6V: protocol, level, number, optional suffix.
MPDS_CODE_PATTERN = r"^\d{1,2}-[OABCDE]-\d{1,2}[A-Z]?$"


class Concern(StrEnum):
    """Behavioral-health concerns a call taker can record."""

    MENTAL_HEALTH = "mental_health"
    SUBSTANCE_USE = "substance_use"
    SUICIDAL_IDEATION = "suicidal_ideation"
    TRAUMA = "trauma"
    QUALITY_OF_LIFE = "quality_of_life"
    SELF_SUFFICIENCY = "self_sufficiency"
    WELFARE_CHECK = "welfare_check"


class UnitType(StrEnum):
    CO_RESPONDER = "co_responder"
    POLICE = "police"
    EMS = "ems"


class Disposition(StrEnum):
    """How a contact ended (the outcomes partners ask about)."""

    RESOLVED_BY_PHONE = "resolved_by_phone"
    STABILIZED_ON_SCENE = "stabilized_on_scene"
    SAFETY_PLAN = "safety_plan"
    DIVERTED_FROM_JAIL = "diverted_from_jail"
    DIVERTED_FROM_HOSPITAL = "diverted_from_hospital"
    LINKED_TO_SERVICES = "linked_to_services"
    TRANSPORTED = "transported"
    ARRESTED = "arrested"
    UNABLE_TO_CONTACT = "unable_to_contact"
    RESOURCES_DECLINED = "resources_declined"
    CANCELLED = "cancelled"


def _to_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    call_id: Annotated[str, Field(min_length=1, max_length=128)]
    # Any offset is accepted; everything downstream works in UTC.
    occurred_at: Annotated[AwareDatetime, AfterValidator(_to_utc)]


class CallReceived(_Event):
    """A 911 call the center's dispatcher flagged as possibly behavioral-health related."""

    type: Literal["call.received"] = "call.received"
    center_id: Annotated[str, Field(min_length=1, max_length=64)]
    nature_code: Annotated[str, Field(min_length=1, max_length=64)]
    mpds_code: Annotated[str, Field(pattern=MPDS_CODE_PATTERN)] | None = None
    # APCO common incident type (NENA EIDO's incidentTypeCommonRegistryText), e.g. MNTL, SUICTHRT.
    incident_type_common: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    # A set: duplicates in the input collapse, and validation stays in pydantic's compiled core.
    concerns: frozenset[Concern] = Field(default_factory=frozenset, max_length=len(Concern))
    weapon_present: bool = False
    violence_or_threat_to_others: bool = False
    medical_emergency: bool = False
    imminent_risk_to_self: bool = False
    crime_in_progress: bool = False
    caller_requests_police: bool = False
    person_in_crisis_is_caller: bool = False
    juvenile: bool = False
    district: Annotated[str, Field(min_length=1, max_length=64)]
    # Personal data: stored internally, never published to partner topics or reports.
    caller_phone: Annotated[str, Field(max_length=32)] | None = Field(
        default=None,
        description="The caller's phone number. Personal data: stored internally only, "
        "never published to partner topics or reports.",
    )


class TriageOverridden(_Event):
    """A dispatcher replaced the route the rules chose."""

    type: Literal["triage.overridden"] = "triage.overridden"
    route: Route
    overridden_by: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class UnitDispatched(_Event):
    type: Literal["unit.dispatched"] = "unit.dispatched"
    unit_id: Annotated[str, Field(min_length=1, max_length=64)]
    unit_type: UnitType


class UnitArrived(_Event):
    type: Literal["unit.arrived"] = "unit.arrived"
    unit_id: Annotated[str, Field(min_length=1, max_length=64)]
    unit_type: UnitType


class CallClosed(_Event):
    type: Literal["call.closed"] = "call.closed"
    disposition: Disposition


CallEvent = Annotated[
    CallReceived | TriageOverridden | UnitDispatched | UnitArrived | CallClosed,
    Field(discriminator="type"),
]
CALL_EVENT_TYPES: tuple[str, ...] = (
    "call.received",
    "triage.overridden",
    "unit.dispatched",
    "unit.arrived",
    "call.closed",
)

call_event_adapter: TypeAdapter[CallEvent] = TypeAdapter(CallEvent)


def decode_call_event(raw: bytes | str) -> CallEvent:
    """Parse and validate one JSON event; raises ``pydantic.ValidationError`` on any problem.

    A NUL character (JSON ``\\u0000``) is refused here: PostgreSQL text cannot store it, and a
    record the database always refuses would block its partition instead of being dead-lettered.
    """
    if (b"\\u0000" if isinstance(raw, bytes) else "\\u0000") in raw:
        raise ValidationError.from_exception_data(
            "CallEvent", [{"type": "value_error", "loc": ("(event)",), "input": "\\u0000",
                           "ctx": {"error": ValueError("NUL characters (\\u0000) are not allowed")}}])
    return call_event_adapter.validate_json(raw)


def encode_call_event(event: CallReceived | TriageOverridden | UnitDispatched | UnitArrived | CallClosed) -> bytes:
    """The compact JSON of an event as integrations send it: unset optional fields left out, concerns
    sorted, so the same event always encodes to the same bytes (imports and ingest are repeatable)."""
    body = event.model_dump(mode="json", exclude_none=True)
    if "concerns" in body:
        body["concerns"] = sorted(body["concerns"])
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
