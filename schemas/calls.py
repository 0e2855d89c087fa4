"""Inbound lifecycle events of a 911 call, as the dispatch (CAD) integrations send them.

Every event travels on ``crisis.calls.v1`` keyed by ``call_id`` so that one call's events stay
in order on one partition. The ``type`` field selects the model (a pydantic discriminated union).
Field names are a contract with the CAD integrations: rename nothing without a new topic version.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.fields import (
    NO_CONTROL_CHARACTERS,
    NO_CONTROL_CHARACTERS_BUT_LINE_BREAKS,
    EventTime,
    FreeText,
    Identifier,
    ShortText,
    TimeWindow,
)
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
    """How a contact ended (the outcomes partners ask about).

    Values are only ever added (a CAD integration may send any of them). Reports group them
    (``domain.outcome_definitions``), and each maps to a NEMSIS eDisposition.30 code (README).
    """

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
    # Added for outcome reports: where a transport went, and custody.
    TRANSPORTED_TO_COMMUNITY_LOCATION = "transported_to_community_location"
    TRANSPORTED_TO_CRISIS_CENTER = "transported_to_crisis_center"
    TRANSPORTED_TO_EMERGENCY_DEPARTMENT = "transported_to_emergency_department"  # voluntary
    INVOLUNTARY_HOLD = "involuntary_hold"  # taken to an emergency department on an involuntary hold
    RELEASED_TO_LAW_ENFORCEMENT = "released_to_law_enforcement"


class UnservedReason(StrEnum):
    """Why the program's team (or line) did not serve an eligible call, as the CAD records it on close.

    Reasons the events themselves show (a dispatcher override, a close before arrival, no dispatch)
    are derived by the reports; these are the ones only the CAD knows.
    """

    NO_TEAM_AVAILABLE = "no_team_available"
    OUTSIDE_HOURS = "outside_hours"
    DECLINED_BY_TEAM = "declined_by_team"
    CALLER_DECLINED = "caller_declined"
    UNABLE_TO_LOCATE = "unable_to_locate"
    OTHER = "other"


class AttemptResult(StrEnum):
    """What one follow-up attempt achieved."""

    REACHED = "reached"
    NO_ANSWER = "no_answer"
    LEFT_MESSAGE = "left_message"
    WRONG_NUMBER = "wrong_number"
    DECLINED = "declined"


class Channel(StrEnum):
    PHONE = "phone"
    TEXT = "text"
    IN_PERSON = "in_person"


class Linkage(StrEnum):
    """Where a completed follow-up linked the person to (long-term services)."""

    OUTPATIENT_MENTAL_HEALTH = "outpatient_mental_health"
    SUBSTANCE_USE_TREATMENT = "substance_use_treatment"
    CRISIS_STABILIZATION = "crisis_stabilization"
    PRIMARY_CARE = "primary_care"
    HOUSING_OR_SOCIAL_SERVICES = "housing_or_social_services"
    PEER_SUPPORT = "peer_support"
    NONE_NEEDED = "none_needed"
    DECLINED = "declined"


def _repetitions_allowed(schema: dict[str, Any]) -> None:
    """The published schema says what the worker does: a repeated concern is accepted and counts once."""
    schema.pop("uniqueItems", None)
    schema.pop("maxItems", None)  # the limit applies to distinct concerns, which JSON Schema cannot say
    schema["description"] = ("Behavioral-health concerns recorded by the call taker; a repeated one counts once "
                             f"(at most {len(Concern)} distinct).")


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    event_id: Identifier
    call_id: Identifier
    # RFC 3339 with any offset, converted to UTC; a time outside the plausible window is refused.
    occurred_at: EventTime


class CallReceived(_Event):
    """A 911 call the center's dispatcher flagged as possibly behavioral-health related."""

    type: Literal["call.received"] = "call.received"
    center_id: ShortText
    nature_code: ShortText
    mpds_code: Annotated[str, Field(pattern=MPDS_CODE_PATTERN)] | None = None
    # APCO common incident type (NENA EIDO's incidentTypeCommonRegistryText), e.g. MNTL, SUICTHRT.
    incident_type_common: Annotated[
        str, Field(min_length=1, max_length=32, pattern=NO_CONTROL_CHARACTERS)] | None = None
    # A set: a concern listed twice counts once (the published schema says so: no reason to drop a
    # crisis call over a harmless repetition); validation stays in pydantic's compiled core.
    concerns: frozenset[Concern] = Field(default_factory=frozenset, max_length=len(Concern),
                                         json_schema_extra=_repetitions_allowed)
    weapon_present: bool = False
    violence_or_threat_to_others: bool = False
    medical_emergency: bool = False
    imminent_risk_to_self: bool = False
    crime_in_progress: bool = False
    caller_requests_police: bool = False
    person_in_crisis_is_caller: bool = False
    juvenile: bool = False
    district: ShortText
    # Personal data: stored internally, never published to partner topics or reports.
    caller_phone: Annotated[str, Field(max_length=32, pattern=NO_CONTROL_CHARACTERS)] | None = Field(
        default=None,
        description="The caller's phone number. Personal data: stored internally only, "
        "never published to partner topics or reports.",
    )


class TriageOverridden(_Event):
    """A dispatcher replaced the route the rules chose.

    An override that lowers police involvement on a call with a safety flag must name who approved
    it and their role (one of the policy's ``overrides.lower_safety_roles``); without that it is refused.
    """

    type: Literal["triage.overridden"] = "triage.overridden"
    route: Route
    overridden_by: ShortText
    reason: FreeText
    approved_by: ShortText | None = None
    approved_by_role: ShortText | None = None


class UnitDispatched(_Event):
    type: Literal["unit.dispatched"] = "unit.dispatched"
    unit_id: ShortText
    unit_type: UnitType


class UnitArrived(_Event):
    type: Literal["unit.arrived"] = "unit.arrived"
    unit_id: ShortText
    unit_type: UnitType


class CallClosed(_Event):
    """The call ended, with its disposition; ``unserved_reason`` when the program's team did not serve it."""

    type: Literal["call.closed"] = "call.closed"
    disposition: Disposition
    unserved_reason: UnservedReason | None = None


class FollowupAttempted(_Event):
    """A clinician tried to reach the person after a crisis contact (post-event response)."""

    type: Literal["followup.attempted"] = "followup.attempted"
    attempt_result: AttemptResult
    attempted_by: ShortText
    channel: Channel


class FollowupCompleted(_Event):
    """The follow-up of a crisis contact ended with the person linked to care (or needing none, or declining)."""

    type: Literal["followup.completed"] = "followup.completed"
    linkage: Linkage
    completed_by: ShortText | None = None


CallEvent = Annotated[
    CallReceived | TriageOverridden | UnitDispatched | UnitArrived | CallClosed | FollowupAttempted
    | FollowupCompleted,
    Field(discriminator="type"),
]
CALL_EVENT_MODELS: tuple[type[_Event], ...] = (
    CallReceived, TriageOverridden, UnitDispatched, UnitArrived, CallClosed, FollowupAttempted, FollowupCompleted,
)
CALL_EVENT_TYPES: tuple[str, ...] = tuple(model.model_fields["type"].default for model in CALL_EVENT_MODELS)

call_event_adapter: TypeAdapter[CallEvent] = TypeAdapter(CallEvent)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    unique = dict(pairs)
    if len(unique) != len(pairs):
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise PydanticCustomError("duplicate_key", "key(s) {keys} appear more than once",
                                  {"keys": ", ".join(repeated)[:200]})
    return unique


_DUPLICATE_KEY_CHECKER = json.JSONDecoder(object_pairs_hook=_refuse_duplicate_keys)


def _duplicate_key_error(raw: bytes | str) -> InitErrorDetails | None:
    try:
        _DUPLICATE_KEY_CHECKER.decode(raw.decode() if isinstance(raw, bytes) else raw)
    except PydanticCustomError as exc:
        return {"type": exc, "loc": (), "input": None}
    except ValueError:  # already validated by pydantic: any other parse difference is not a duplicate
        return None
    return None


def decode_call_event(raw: bytes | str, window: TimeWindow | None = None) -> CallEvent:
    """Parse and validate one JSON event; raises ``pydantic.ValidationError`` on any problem.

    ``window`` bounds ``occurred_at`` (default: only the absolute bounds). A key given twice is
    refused: JSON parsers disagree on which one wins, so ``"weapon_present": true`` followed by
    ``"weapon_present": false`` would mean a weapon to one system and none to another.
    """
    event = call_event_adapter.validate_json(raw, context={"time_window": window} if window else None)
    # Checked after validation (valid JSON only), with the standard library's parser: a second
    # parse costs about 10 us per event, and only valid events pay it.
    duplicate = _duplicate_key_error(raw)
    if duplicate is not None:
        raise ValidationError.from_exception_data("CallEvent", [duplicate])
    return event


# The control-character patterns hold the very characters they forbid: never echo them.
_CONTROL_PATTERNS = frozenset({NO_CONTROL_CHARACTERS, NO_CONTROL_CHARACTERS_BUT_LINE_BREAKS})


# Field names and type tags we defined are echoed as they are. An unknown field's name is the input's
# own and may hold anything (a phone number, a name: the fuzz of the inbound topic puts them there):
# it is echoed only when it is plainly a mistyped field name (letters and underscores), else replaced.
_KNOWN_NAMES = frozenset(CALL_EVENT_TYPES) | {name for model in CALL_EVENT_MODELS for name in model.model_fields}
_PLAIN_NAME = re.compile(r"[A-Za-z_]{1,40}")


def _location(loc: tuple[int | str, ...]) -> str:
    if loc and loc[0] in CALL_EVENT_TYPES:  # the union's tag, not a field
        loc = loc[1:]
    parts = [str(part) if isinstance(part, int) or part in _KNOWN_NAMES or _PLAIN_NAME.fullmatch(part)
             else "(a field name that is not an identifier)" for part in loc]
    return ".".join(parts) or "(event)"


def field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """Each field error as ``(field, message)``, fields named as in the document. Never echoes the
    input (personal data, terminal escapes): not its values, not an unknown field's name unless it is
    a plain identifier, not an unknown type tag."""
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        message = err["msg"]
        if err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") in _CONTROL_PATTERNS:
            # pydantic's message quotes the pattern, itself full of control characters
            message = "contains a control character (C0/C1 controls, ANSI escapes, bidi overrides are refused)"
        elif err["type"] == "union_tag_invalid":  # pydantic's message quotes the tag it was given
            message = f"unknown type; expected one of {err.get('ctx', {}).get('expected_tags', CALL_EVENT_TYPES)}"
        errors.append((_location(err["loc"]), message))
    return errors


def describe_validation_error(exc: ValidationError, limit: int = 2000) -> str:
    """Every field error as ``field: message``, joined; never echoes the input (see ``field_errors``)."""
    return "; ".join(f"{where}: {message}" for where, message in field_errors(exc))[:limit]


def encode_call_event(event: CallEvent) -> bytes:
    """The compact JSON of an event as integrations send it: unset optional fields left out, concerns
    sorted, so the same event always encodes to the same bytes (imports and ingest are repeatable)."""
    body = event.model_dump(mode="json", exclude_none=True)
    if "concerns" in body:
        body["concerns"] = sorted(body["concerns"])
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
