"""The AsyncAPI 3.0.0 description of our four Kafka topics, built from the pydantic models.

``asyncapi_document()`` is pure: same models, same document. ``docs/asyncapi.json`` is its
committed output (``crisis asyncapi --out docs/asyncapi.json``); a unit test fails when the two
differ and validates the document against the official AsyncAPI 3.0.0 JSON Schema.

Payload schemas: inbound events in pydantic's validation mode (what we accept), outbound events
in serialization mode (what ``model_dump_json`` writes, so excluded fields such as a dispatcher's
free-text override reason never appear).
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas.calls import CALL_EVENT_MODELS
from schemas.deadletter import DeadLetter
from schemas.followups import FollowupEvent
from schemas.outcomes import OutcomesDaily
from schemas.sla import SlaEvent
from schemas.triage import TriageDecision
from streams import topics

ASYNCAPI_VERSION = "3.0.0"
REF_TEMPLATE = "#/components/schemas/{model}"
KAFKA_BINDING_VERSION = "0.5.0"

OUTBOUND_MODELS: tuple[type[BaseModel], ...] = (TriageDecision, SlaEvent, FollowupEvent, DeadLetter, OutcomesDaily)

_CALL_ID_KEY = {"type": "string", "description": "The call's call_id: a call's events stay in order on one partition."}


def _project_version() -> str:
    try:
        return version("crisis-pipeline")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0.1.0"


def _component_schemas() -> dict[str, Any]:
    """Every model's JSON Schema and the enums they share, flat under ``components/schemas``."""
    inputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in CALL_EVENT_MODELS]
    inputs += [(m, "serialization") for m in OUTBOUND_MODELS]
    refs, top = models_json_schema(inputs, ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    # Each model must sit under its own name: message payloads refer to it by that name.
    for (model, _mode), ref in refs.items():
        name = ref["$ref"].removeprefix("#/components/schemas/")
        if name != model.__name__:
            raise RuntimeError(f"{model.__name__} got the JSON Schema name {name}: rename one of the models")
    return schemas


def _string_header(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


# CloudEvents 1.0, Kafka protocol binding, binary content mode: on every record we produce.
CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "ce_specversion": {"type": "string", "const": "1.0", "description": "CloudEvents spec version."},
    "ce_id": _string_header("The event's deterministic `event_id`: deduplicate by it."),
    "ce_source": _string_header("This deployment (`CRISIS_EVENT_SOURCE`, default `/crisis-pipeline`)."),
    "ce_type": _string_header("The event's `type` (`crisis.deadletter` for dead letters)."),
    "ce_time": {"type": "string", "format": "date-time",
                "description": "When it happened (event time), RFC 3339 in UTC."},
    "ce_subject": _string_header("The call id (a dead letter: the rejected record's key, when it has a small one)."),
    "content-type": {"type": "string", "const": "application/json"},
}
CLOUDEVENTS_REQUIRED = ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"]
# Kafka Connect's dead-letter headers, so operators' tooling reads where a rejected record came from.
DEAD_LETTER_HEADERS: dict[str, Any] = {
    "__connect.errors.topic": _string_header("The topic the record was read from."),
    "__connect.errors.partition": _string_header("Its partition (decimal)."),
    "__connect.errors.offset": _string_header("Its offset (decimal)."),
    "__connect.errors.stage": _string_header("Where it was refused: decode, handle, process or store."),
    "__connect.errors.exception.class.name": _string_header("The exception's name."),
    "__connect.errors.exception.message": _string_header("The readable error (never echoes field values)."),
    "crisis.deadletter.reason": _string_header("The dead-letter reason code."),
}


def _headers(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    properties = {**CLOUDEVENTS_HEADERS, **(extra or {})}
    required = CLOUDEVENTS_REQUIRED + sorted(extra or {})
    return {"type": "object", "properties": properties, "required": required}


def _message(model: type[BaseModel], name: str, summary: str, key: dict[str, Any],
             headers: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "title": model.__name__,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    if headers is not None:
        message["headers"] = headers
    return message


def _event_type(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].default)


def _channel_refs(channel: str, message_ids: list[str]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{channel}/messages/{message_id}"} for message_id in message_ids]


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of crisis-pipeline's topics, from the application's point of view."""
    messages: dict[str, Any] = {}
    call_message_ids: list[str] = []
    for model in CALL_EVENT_MODELS:
        event_type = _event_type(model)
        summary = (model.__doc__ or f"A {event_type} lifecycle event.").strip().splitlines()[0]
        messages[model.__name__] = _message(model, event_type, summary, _CALL_ID_KEY)
        call_message_ids.append(model.__name__)
    messages["TriageDecision"] = _message(
        TriageDecision, "triage.decision",
        "A triage decision (triage.decided) or a dispatcher's override (triage.overridden).", _CALL_ID_KEY,
        _headers())
    messages["SlaEvent"] = _message(
        SlaEvent, "sla.event",
        "A step of a co-responder arrival timer: sla.warning, sla.breached, sla.met or sla.late_arrival.",
        _CALL_ID_KEY, _headers())
    messages["FollowupEvent"] = _message(
        FollowupEvent, "followup.event",
        "A step of a follow-up after a crisis contact: followup.due, followup.overdue, followup.completed, "
        "followup.dropped_out or followup.expired.",
        _CALL_ID_KEY, _headers())
    messages["OutcomesDaily"] = _message(
        OutcomesDaily, "outcomes.daily",
        "One center's outcome counts for one closed local day (revision 1), or a revision of them.",
        {"type": "string", "description": "The center_id: a center's days stay in order on one partition."},
        _headers())  # ce_subject is the center_id, ce_time the moment the record was computed
    messages["DeadLetter"] = _message(
        DeadLetter, "deadletter",
        "An inbound record we could not accept, with the reason and the original bytes.",
        {"type": ["string", "null"],
         "description": "The rejected record's own key (normally its call_id); null when it had none or it was "
                        "over 1 KiB (the dead_letters table keeps every byte)."},
        _headers(DEAD_LETTER_HEADERS))

    channels: dict[str, Any] = {
        "calls": {
            "address": topics.CALLS,
            "title": "Call lifecycle events (inbound)",
            "description": (
                "Every lifecycle event of a 911 call, JSON with a `type` discriminator, keyed by `call_id`. "
                "Written by the city's CAD integrations; read by the crisis-pipeline workers only. "
                "Internal: `call.received` may carry `caller_phone` (personal data), which is stored in "
                "the internal `calls` table and never forwarded to partner topics. Unknown fields and "
                "times without an offset are rejected (dead-lettered)."
            ),
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}
                         for message_id in call_message_ids},
        },
        "triage": {
            "address": topics.TRIAGE,
            "title": "Triage decisions (partner topic)",
            "description": (
                "Triage decisions and dispatcher overrides, keyed by `call_id`. Written by the crisis-pipeline "
                "workers; read by partners (crisis line, co-responder teams, reporting). Partner topic: no "
                "personal data. Callers appear only as `person_ref`, a keyed HMAC of the phone number; "
                "a dispatcher's free-text override reason is never published. Consumers deduplicate by "
                "`event_id`."
            ),
            "messages": {"TriageDecision": {"$ref": "#/components/messages/TriageDecision"}},
        },
        "sla": {
            "address": topics.SLA,
            "title": "Co-responder arrival SLA events (partner topic)",
            "description": (
                "Co-responder arrival warnings, breaches and arrivals, keyed by `call_id`. Written by the "
                "crisis-pipeline workers; read by partners (co-responder supervisors, reporting). Partner "
                "topic: no personal data (district only, never addresses, names or numbers). Consumers "
                "deduplicate by `event_id`."
            ),
            "messages": {"SlaEvent": {"$ref": "#/components/messages/SlaEvent"}},
        },
        "followups": {
            "address": topics.FOLLOWUPS,
            "title": "Follow-ups after a crisis contact (partner topic)",
            "description": (
                "The post-event response, keyed by `call_id`: when each follow-up attempt is due, overdue ones, "
                "and how each follow-up ended (completed with its linkage to care, dropped out, expired). "
                "Written by the crisis-pipeline workers; read by partners (follow-up clinicians, care "
                "coordination, reporting). Partner topic: no personal data (the person appears only as "
                "`person_ref`, a keyed pseudonym; district only). Consumers deduplicate by `event_id`."
            ),
            "messages": {"FollowupEvent": {"$ref": "#/components/messages/FollowupEvent"}},
        },
        "outcomes": {
            "address": topics.OUTCOMES,
            "title": "Daily outcomes per center (partner topic)",
            "description": (
                "Each center's outcome counts for each local day (the policy's time zone), keyed by `center_id`: "
                "the eligibility funnel, unserved reasons, routes, dispositions, SLA and follow-up counts. Published "
                "once the day has closed (its end plus CRISIS_OUTCOMES_LATENESS_SECONDS); a later event that "
                "changes the day publishes it again with the next `revision`, which replaces the earlier ones. "
                "Written by the crisis-pipeline workers; read by partners (funders, councils, community "
                "partners, reporting). Partner topic: no personal data, counts only, and counts from 1 to "
                "`suppression_threshold` suppressed (null, listed in `suppressed`) with secondary suppression. "
                "Consumers deduplicate by `event_id`."
            ),
            "messages": {"OutcomesDaily": {"$ref": "#/components/messages/OutcomesDaily"}},
        },
        "deadletter": {
            "address": topics.DEADLETTER,
            "title": "Dead letters (internal)",
            "description": (
                "Every inbound record the pipeline rejected, with the reason, a readable error and the source "
                "topic, partition, offset and key. Written by the crisis-pipeline workers; read by the "
                "operators of the pipeline only. Internal, not a partner topic: `original_value_base64` is the "
                "record exactly as read and may contain personal data."
            ),
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        },
    }

    operations: dict[str, Any] = {
        "receiveCallEvents": {
            "action": "receive",
            "channel": {"$ref": "#/channels/calls"},
            "summary": "Triage each call, run its arrival SLA timer and follow-ups, and store its lifecycle.",
            "messages": _channel_refs("calls", call_message_ids),
        },
        "sendTriageDecisions": {
            "action": "send",
            "channel": {"$ref": "#/channels/triage"},
            "summary": "Publish each decision and override once it is stored.",
            "messages": _channel_refs("triage", ["TriageDecision"]),
        },
        "sendSlaEvents": {
            "action": "send",
            "channel": {"$ref": "#/channels/sla"},
            "summary": "Publish each SLA timer step once it is stored.",
            "messages": _channel_refs("sla", ["SlaEvent"]),
        },
        "sendFollowupEvents": {
            "action": "send",
            "channel": {"$ref": "#/channels/followups"},
            "summary": "Publish each follow-up step once it is stored.",
            "messages": _channel_refs("followups", ["FollowupEvent"]),
        },
        "sendOutcomes": {
            "action": "send",
            "channel": {"$ref": "#/channels/outcomes"},
            "summary": "Publish each closed day's outcome counts, and each revision of them.",
            "messages": _channel_refs("outcomes", ["OutcomesDaily"]),
        },
        "sendDeadLetters": {
            "action": "send",
            "channel": {"$ref": "#/channels/deadletter"},
            "summary": "Publish each rejected inbound record with its reason.",
            "messages": _channel_refs("deadletter", ["DeadLetter"]),
        },
    }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "crisis-pipeline",
            "version": _project_version(),
            "description": (
                "Event-driven pipeline for 911 behavioral-health crisis calls. A city's CAD integrations send "
                "call lifecycle events; the pipeline triages each call (diversion line, co-responder team or "
                "emergency), runs co-responder arrival SLA timers and follow-up schedules, and publishes "
                "decisions, SLA and follow-up events and daily outcome counts on partner topics without personal "
                "data. Every topic is keyed by `call_id`, except the outcomes feed (`center_id`). Delivery is "
                "at-least-once: every event carries a deterministic `event_id` to deduplicate by. "
                "Topic names may carry a deployment prefix (`CRISIS_TOPIC_PREFIX`)."
            ),
        },
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": (
                    "Example only: the local development broker (`crisis broker`). Deployments set the "
                    "brokers with `KAFKA_BOOTSTRAP`."
                ),
            },
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": _component_schemas(), "messages": messages},
    }


def asyncapi_json() -> str:
    """The document as committed in ``docs/asyncapi.json``: indented, keys in build order, final newline."""
    return json.dumps(asyncapi_document(), indent=2, ensure_ascii=False) + "\n"
