"""Triage policies: the rules as data, loaded from TOML and validated before use."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domain.code_effects import MappedFlag
from domain.nature_codes import NatureCodeSettings
from schemas.calls import Concern, Disposition
from schemas.followups import Contact
from schemas.sla import Response
from schemas.triage import Route

_Model = TypeVar("_Model", bound=BaseModel)

DEFAULT_POLICY_PATH = Path(__file__).parent / "policies" / "default.toml"

SafetyFlag = MappedFlag  # one list of the flags: the codes' mapping raises the same ones the rules read
SAFETY_FLAGS: tuple[str, ...] = SafetyFlag.__args__  # type: ignore[attr-defined]


def _known_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'America/Chicago')") from exc
    return name


# An IANA time zone name, checked on load (policies and CAD export mappings read times in one).
TimeZoneName = Annotated[str, AfterValidator(_known_timezone)]


class PolicyError(ValueError):
    """A policy file that cannot be used, with a message that names the file and the problem."""


@dataclass(frozen=True)
class OpeningHours:
    """Daily opening hours in the policy's time zone; ``end <= start`` means open overnight."""

    start: time
    end: time | None  # None: until midnight ("24:00")

    @classmethod
    def parse(cls, text: str) -> OpeningHours:
        try:
            start_text, end_text = (part.strip() for part in text.split("-"))
            start = time.fromisoformat(start_text)
            end = None if end_text == "24:00" else time.fromisoformat(end_text)
        except ValueError as exc:
            raise ValueError(f"hours must look like '06:00-22:00' or '00:00-24:00', got {text!r}") from exc
        if start.tzinfo is not None or (end is not None and end.tzinfo is not None):
            # Hours are local to the policy's time zone; an offset here would be a second, conflicting one.
            raise ValueError(f"hours must not carry a UTC offset (set the policy's timezone instead), got {text!r}")
        return cls(start, end)

    @property
    def always_open(self) -> bool:
        return self.start == time(0) and self.end is None

    def is_open(self, local_time: time) -> bool:
        if self.end is None:
            return local_time >= self.start
        if self.start < self.end:
            return self.start <= local_time < self.end
        return local_time >= self.start or local_time < self.end


class RouteSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: str = "00:00-24:00"
    fallback: Route

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, hours: str) -> str:
        OpeningHours.parse(hours)
        return hours

    @cached_property
    def opening_hours(self) -> OpeningHours:
        return OpeningHours.parse(self.hours)


class SlaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warning_after_seconds: Annotated[float, Field(gt=0)]
    breach_after_seconds: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _warning_before_breach(self) -> SlaSettings:
        if self.warning_after_seconds >= self.breach_after_seconds:
            raise ValueError("warning_after_seconds must be smaller than breach_after_seconds")
        return self

    @property
    def warning_after(self) -> timedelta:
        return timedelta(seconds=self.warning_after_seconds)

    @property
    def breach_after(self) -> timedelta:
        return timedelta(seconds=self.breach_after_seconds)


class OverrideSettings(BaseModel):
    """Who may approve a dispatcher override that lowers police involvement on a call with a safety flag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lower_safety_roles: frozenset[Annotated[str, Field(min_length=1, max_length=64)]] = frozenset({"supervisor"})


class FollowupSettings(BaseModel):
    """The post-event response: which contacts get a follow-up and on what schedule.

    Local program settings, not standards (Lifeline guidance: a minimum number of contacts, a
    maximum duration, dropped out after three to five failed attempts; HEDIS: 7 and 30 days).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    contacts: frozenset[Contact] = frozenset(Contact)
    skip_dispositions: frozenset[Disposition] = frozenset({Disposition.ARRESTED, Disposition.CANCELLED})
    # Attempt n is due this many hours after the contact ended.
    attempt_due_after_hours: tuple[Annotated[float, Field(gt=0)], ...] = (24.0, 72.0, 168.0)
    attempts_before_dropout: Annotated[int, Field(ge=1, le=20)] = 3
    overdue_grace_hours: Annotated[float, Field(ge=0)] = 4.0
    expire_after_days: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _consistent(self) -> FollowupSettings:
        schedule = self.attempt_due_after_hours
        if len(schedule) < self.attempts_before_dropout:
            raise ValueError(f"attempt_due_after_hours has {len(schedule)} entries: give one per attempt "
                             f"(attempts_before_dropout = {self.attempts_before_dropout})")
        if any(later <= earlier for earlier, later in pairwise(schedule)):
            raise ValueError("attempt_due_after_hours must increase from one attempt to the next")
        if self.expire_after_days * 24 <= schedule[self.attempts_before_dropout - 1]:
            raise ValueError("expire_after_days must leave time for the last attempt")
        return self

    def attempt_due_after(self, attempt_number: int) -> timedelta:
        """How long after the end of the contact attempt ``attempt_number`` (from 1) is due."""
        return timedelta(hours=self.attempt_due_after_hours[attempt_number - 1])

    @property
    def overdue_grace(self) -> timedelta:
        return timedelta(hours=self.overdue_grace_hours)

    @property
    def expire_after(self) -> timedelta:
        return timedelta(days=self.expire_after_days)


class Policy(BaseModel):
    """A city's triage policy. See ``policies/default.toml`` for every field, with its source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64)]
    version: Annotated[str, Field(min_length=1, max_length=64)]
    timezone: TimeZoneName
    behavioral_health_concerns: frozenset[Concern]
    emergency_flags: frozenset[SafetyFlag]
    second_response_on_emergency: bool = True
    co_responder_flags: frozenset[SafetyFlag] = frozenset()
    on_scene_concerns: frozenset[Concern] = frozenset()
    third_party_caller_needs_on_scene: bool = True
    routes: dict[Literal["diversion_line", "co_responder"], RouteSettings]
    sla: dict[Response, SlaSettings]
    overrides: OverrideSettings = OverrideSettings()
    followup: FollowupSettings = FollowupSettings()
    # What each center's nature codes, MPDS determinants and APCO incident types mean (domain/nature_codes.py).
    nature_codes: NatureCodeSettings = Field(default_factory=NatureCodeSettings)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        overlap = self.emergency_flags & self.co_responder_flags
        if overlap:
            raise ValueError(f"flags listed both as emergency and co-responder flags: {sorted(overlap)}")
        if set(self.routes) != {"diversion_line", "co_responder"}:
            raise ValueError("routes must configure both 'diversion_line' and 'co_responder'")
        for name, settings in self.routes.items():
            # Fallbacks only move towards more police involvement, so a closed route can never
            # send a call with safety flags back to the phone line.
            if settings.fallback.rank <= Route(name).rank:
                raise ValueError(f"routes.{name}.fallback must be a route after {name}, got {settings.fallback}")
        if set(self.sla) != set(Response):
            raise ValueError("sla must configure both 'first' and 'second' responses")
        return self

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, route: Route, at: datetime) -> bool:
        """Whether ``route`` takes calls at the aware instant ``at`` (emergency always does)."""
        if route is Route.EMERGENCY:
            return True
        return self.routes[route].opening_hours.is_open(at.astimezone(self.zone).time())  # type: ignore[index]

    def fallback(self, route: Route) -> Route:
        return self.routes[route].fallback  # type: ignore[index]


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate a policy file; ``None`` means ``$CRISIS_POLICY`` or the shipped default."""
    chosen = Path(path or os.environ.get("CRISIS_POLICY") or DEFAULT_POLICY_PATH)
    return load_toml_model(chosen, Policy, "policy file", PolicyError)


def load_toml_model(path: Path, model: type[_Model], what: str, error: type[Exception]) -> _Model:
    """Read a TOML file into ``model``; ``error`` names the file and every problem (missing, unreadable,
    not TOML, each invalid field) in one message."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{what} not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid TOML (UTF-8): {exc}") from exc
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                             for err in exc.errors(include_url=False))
        raise error(f"{what} {path} is invalid: {problems}") from exc
