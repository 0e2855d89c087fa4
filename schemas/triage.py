"""Triage decisions as published on ``crisis.triage.v1`` (a partner topic: no personal data)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Route(StrEnum):
    """Where a call goes. Declared from least to most police-involved: the order matters to the rules."""

    DIVERSION_LINE = "diversion_line"
    CO_RESPONDER = "co_responder"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        """0 for the diversion line, 2 for emergency: a safety flag may only raise it."""
        return list(Route).index(self)


class TriageDecision(BaseModel):
    """The route chosen for one call, with the reasons and the policy that chose it.

    ``type`` is ``triage.decided`` for the rules' decision and ``triage.overridden`` when a
    dispatcher replaced it (then ``previous_route`` and ``overridden_by`` are set).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["triage.decided", "triage.overridden"] = "triage.decided"
    event_id: str
    call_id: str
    source_event_id: str
    decided_at: AwareDatetime
    route: Route
    reasons: tuple[str, ...]
    policy_name: str
    policy_version: str
    second_response_requested: bool
    center_id: str | None = None
    district: str | None = None
    person_ref: str | None = None
    # The call's safety flags (weapon_present, ...): an override lowering police involvement on a
    # call with any of them needs an approver.
    safety_flags: tuple[str, ...] = ()
    previous_route: Route | None = None
    overridden_by: str | None = None
    approved_by: str | None = None
    approved_by_role: str | None = None
    # The dispatcher's free-text reason may name people: stored in Postgres, never serialised to partners.
    override_reason: str | None = Field(default=None, exclude=True)
