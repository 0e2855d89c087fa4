"""Daily outcome records, published on ``crisis.outcomes.v1`` (a partner topic: counts only, suppressed).

One record per center and local day once the day has closed (its end in the policy's time zone plus
``CRISIS_OUTCOMES_LATENESS_SECONDS``); an event that changes a closed day later publishes the day
again with the next ``revision``. Keyed by ``center_id``. ``event_id`` names the center, the day and
the revision: a re-sent record is identical and consumers drop it by id; the highest revision of a
day replaces the earlier ones.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class OutcomesDaily(BaseModel):
    """One center's outcome counts for one local day (definitions: README, "Reports and outcomes")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["outcomes.daily"] = "outcomes.daily"
    event_id: str
    center_id: str
    day: date = Field(description="The local calendar day, in `timezone`, the calls came in.")
    timezone: str
    revision: int = Field(ge=1, description="1 for the day's first record; each revision replaces the last.")
    computed_at: AwareDatetime
    suppression_threshold: int = Field(description="Counts from 1 to this are never published.")
    counts: dict[str, int | None] = Field(
        description="Measure -> count for the day's calls (all districts, hours and routes). null: suppressed.")
    suppressed: list[str] = Field(description="The measures whose count is suppressed (null in `counts`).")
