"""Field types shared by the inbound event models: identifiers, free text and event times.

What they refuse, and why:

- **Control characters** (C0, DEL, C1, and the Unicode bidirectional overrides) in identifiers and
  short texts: an ANSI escape in a district would reach partners' terminals and dashboards, and
  NUL cannot be stored by PostgreSQL at all (a record the database always refuses would block its
  partition). Free text may hold tabs and line breaks, nothing else.
- **Implausible times**: a time before ``EARLIEST_EVENT_AT`` or more than the allowed skew ahead
  of the wall clock is a validation error with a clear reason. Without this, ``9999-12-31T23:00-05:00``
  overflows on conversion to UTC and a year-1 time overflows in deadline arithmetic, outside
  pydantic's validation, which a worker would retry for ever. The window is passed per decode in
  the validation context (``TimeWindow``), because "now" is the caller's clock, not ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, ValidationInfo
from pydantic_core import PydanticCustomError

# C0 controls, DEL, C1 controls, and the bidi embedding/override/isolate characters.
_FORBIDDEN_IN_TEXT = "\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_FORBIDDEN_IN_FREE_TEXT = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
NO_CONTROL_CHARACTERS = rf"^[^{_FORBIDDEN_IN_TEXT}]*$"
NO_CONTROL_CHARACTERS_BUT_LINE_BREAKS = rf"^[^{_FORBIDDEN_IN_FREE_TEXT}]*$"

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=NO_CONTROL_CHARACTERS)]
ShortText = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]
FreeText = Annotated[str, Field(min_length=1, max_length=500, pattern=NO_CONTROL_CHARACTERS_BUT_LINE_BREAKS)]

# Absolute bounds, whatever the context: outside them the arithmetic itself is unsafe.
EARLIEST_EVENT_AT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_EVENT_AT = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TimeWindow:
    """The plausible event times for one decode: ``not_before <= occurred_at <= not_after``."""

    not_before: datetime = EARLIEST_EVENT_AT
    not_after: datetime = LATEST_EVENT_AT

    @classmethod
    def around(cls, now: datetime, max_ahead_seconds: float, not_before: datetime = EARLIEST_EVENT_AT) -> TimeWindow:
        """Events from ``not_before`` up to ``max_ahead_seconds`` after ``now`` (a CAD clock running fast)."""
        return cls(not_before=not_before, not_after=min(LATEST_EVENT_AT, now + timedelta(seconds=max_ahead_seconds)))


def _plausible_utc(moment: datetime, info: ValidationInfo) -> datetime:
    window = (info.context or {}).get("time_window") if isinstance(info.context, dict) else None
    if not isinstance(window, TimeWindow):
        window = TimeWindow()
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "implausible_time", "time {moment} is out of range", {"moment": moment.isoformat()}
        ) from None
    if utc < window.not_before:
        raise PydanticCustomError(
            "implausible_time", "time {moment} is before {not_before}, the earliest accepted",
            {"moment": utc.isoformat(), "not_before": window.not_before.isoformat()},
        )
    if utc > window.not_after:
        raise PydanticCustomError(
            "implausible_time", "time {moment} is after {not_after}, further ahead of the clock than accepted",
            {"moment": utc.isoformat(), "not_after": window.not_after.isoformat()},
        )
    return utc


# An RFC 3339 string with an offset (a JSON number is refused: strict), converted to UTC and checked
# against the plausible window.
EventTime = Annotated[AwareDatetime, Field(strict=True), AfterValidator(_plausible_utc)]
