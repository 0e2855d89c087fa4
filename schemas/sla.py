"""Co-responder arrival SLA events, published on ``crisis.sla.v1`` (a partner topic: no personal data)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict


class Response(StrEnum):
    """First response: the co-responder team is sent first. Second: called to a scene police reached first."""

    FIRST = "first"
    SECOND = "second"


SlaEventType = Literal["sla.warning", "sla.breached", "sla.met", "sla.late_arrival"]


class SlaEvent(BaseModel):
    """One step of a co-responder arrival timer.

    ``occurred_at`` is event time: the deadline for a warning or breach, the arrival for met or
    late arrival. ``event_id`` is deterministic, so consumers can drop the rare replayed duplicate.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: SlaEventType
    event_id: str
    call_id: str
    response: Response
    requested_at: AwareDatetime
    deadline_at: AwareDatetime
    occurred_at: AwareDatetime
    arrival_seconds: float | None = None
    district: str | None = None
