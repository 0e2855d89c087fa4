"""Inbound records: decoding with pydantic, and dead letters for what cannot be accepted.

A dead letter keeps the record for people to look at: the reason (a closed set, a metric label),
a readable error that never echoes field values, where the record came from, and the original
bytes. Postgres keeps every byte of the value and the key; the copy on the dead-letter topic is
bounded so it always fits in one Kafka message (the broker refuses messages over 1 MiB by default,
and a dead letter that can never be published would block its partition for ever).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from domain.triage import deterministic_id
from schemas.calls import CallEvent, decode_call_event, describe_validation_error
from schemas.deadletter import DeadLetter
from schemas.fields import TimeWindow
from sinks.base import RejectedRecord

# The topic copy of a dead letter: at most this much base64 of the original value, this many
# characters of the key and of the error. Together well under 1 MiB.
MAX_DEAD_LETTER_BASE64 = 512 * 1024
MAX_KEY_CHARS = 1024
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class InboundRecord:
    """One record as read from Kafka, before any decoding (``value`` is ``None`` for a tombstone)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Refusal:
    """Why a record was refused: a reason from ``schemas.deadletter.DEAD_LETTER_REASONS``, a readable
    error that never echoes field values, the stage that refused it and the exception's name (both
    for the dead letter's Kafka Connect-style headers)."""

    reason: str
    error: str
    stage: str = "decode"  # decode, handle (the event's meaning), process (our code), store (Postgres or Kafka)
    exception: str = "ValidationError"


def dead_letter_reason(exc: ValidationError) -> str:
    """A bounded reason class for metrics; the full error text travels with the letter."""
    errors = exc.errors()
    kinds = {err["type"] for err in errors}
    if "duplicate_key" in kinds:
        return "duplicate_key"
    if kinds & {"json_invalid", "json_type"} or any(not err["loc"] and err["type"].endswith("_type") for err in errors):
        return "invalid_json"  # not JSON, or JSON that is not an object
    if "union_tag_invalid" in kinds:
        return "unknown_type"
    if "union_tag_not_found" in kinds:
        return "missing_type"
    if "implausible_time" in kinds:
        return "implausible_time"
    if "missing" in kinds:
        return "missing_field"
    return "invalid_field"


def decode_record(record: InboundRecord, window: TimeWindow) -> CallEvent | Refusal:
    """The record's event, or why it is refused. Never raises for any bytes (or none)."""
    if record.value is None:
        return Refusal("tombstone", "the record has no value (a tombstone): call events are never deleted",
                       exception="Tombstone")
    try:
        return decode_call_event(record.value, window)
    except ValidationError as exc:
        return Refusal(dead_letter_reason(exc), describe_validation_error(exc, MAX_ERROR_CHARS))


def _readable(raw: bytes, limit: int) -> str:
    text = raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(raw)} bytes, cut)"
    return text


def dead_letter(record: InboundRecord, refusal: Refusal, now: datetime) -> RejectedRecord:
    """The dead letter for ``record``: every byte for Postgres, a bounded copy for the topic."""
    value = record.value if record.value is not None else b""
    original = base64.b64encode(value).decode()
    error = refusal.error[:MAX_ERROR_CHARS].replace("\x00", "\ufffd")
    if len(original) > MAX_DEAD_LETTER_BASE64:
        error += f" (original of {len(value)} bytes kept in the dead_letters table only)"
        original = ""
    letter = DeadLetter(
        event_id=deterministic_id("deadletter", record.topic, str(record.partition), str(record.offset)),
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        source_key=_readable(record.key, MAX_KEY_CHARS) if record.key is not None else None,
        reason=refusal.reason,
        error=error,
        stage=refusal.stage,
        exception=refusal.exception,
        original_value_base64=original,
        dead_lettered_at=now,
    )
    return RejectedRecord(letter, value, record.key)
