"""Follow-up events, published on ``crisis.followups.v1`` (a partner topic: no personal data).

After a diversion-line call or a co-responder contact ends, a clinician follows up until the person
is linked to care, declines, drops out (no answer after the last scheduled attempt) or the window
expires. Each event carries ``person_ref`` (a keyed pseudonym), never a phone number or a name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.calls import Linkage

FollowupEventType = Literal[
    "followup.due", "followup.overdue", "followup.completed", "followup.dropped_out", "followup.expired",
]
FOLLOWUP_EVENT_TYPES: tuple[str, ...] = get_args(FollowupEventType)


class Contact(StrEnum):
    """The crisis contact a follow-up comes after."""

    DIVERSION_LINE = "diversion_line"
    CO_RESPONDER = "co_responder"
    SECOND_RESPONSE = "second_response"  # the team called to a scene police reached first


class FollowupEvent(BaseModel):
    """One step of a follow-up schedule.

    - ``followup.due``: attempt ``attempt_number`` is due by ``due_at`` (the first when the contact
      ends, the next after each attempt that did not reach the person);
    - ``followup.overdue``: ``due_at`` plus the grace period passed with no attempt recorded;
    - ``followup.completed``: ended with ``linkage`` (``declined`` when the person declined);
    - ``followup.dropped_out``: the last scheduled attempt did not reach the person;
    - ``followup.expired``: the window closed with the follow-up still open.

    ``occurred_at`` is event time: the close, the attempt, the completion, or the deadline that
    passed. ``event_id`` is deterministic: consumers drop a replayed duplicate by it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: FollowupEventType
    event_id: str
    call_id: str
    occurred_at: AwareDatetime
    contact: Contact
    contact_ended_at: AwareDatetime
    attempts_made: int
    attempt_number: int | None = None
    due_at: AwareDatetime | None = None
    linkage: Linkage | None = None
    days_from_contact: float | None = None
    person_ref: str | None = None
    district: str | None = None
    center_id: str | None = None
