"""Dead letters: inbound records we could not accept, with the reason and the original bytes."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict

# Every reason a record is dead-lettered for (documented in the README's contract tables).
DEAD_LETTER_REASONS = (
    "tombstone", "invalid_json", "duplicate_key", "unknown_type", "missing_type", "missing_field",
    "invalid_field", "implausible_time", "unknown_call", "override_refused", "processing_error", "unstorable",
)


class DeadLetter(BaseModel):
    """Published on ``crisis.deadletter.v1``. ``original_value_base64`` is the record exactly as read.

    The dead-letter topic is internal: the original bytes may hold personal data.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: str | None
    reason: str
    error: str
    stage: str = "decode"  # decode, handle, process or store: where the record was refused
    exception: str = "ValidationError"  # the exception's name (no message: see `error`)
    original_value_base64: str
    dead_lettered_at: AwareDatetime
