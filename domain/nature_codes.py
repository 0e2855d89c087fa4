"""Nature codes to concerns and safety flags, per dispatch center: the mapping part of a policy.

A center's CAD sends what it has: a local nature code (``EDP``, ``421A``, ``SUICIDE - SUICIDAL
PERSON``), maybe an MPDS determinant (``25B6V``) and, through NENA EIDO, an APCO common incident
type (``MNTL``). The policy's ``[nature_codes]`` section says what each code means, per center:

- ``codes``: exact codes; ``known``: codes that mean nothing for triage (so they are not reported
  as unmapped); ``prefixes``: the longest matching prefix wins; ``patterns``: regular expressions
  matched against the whole code, the first match wins;
- ``builtin``: tables understood without listing codes: ``mpds`` (protocols 23, 25, 41, see
  ``domain.mpds``) and ``apco`` (APCO common incident types, see ``domain.apco``).

A center's own entries come first, then the built-in tables. Codes are compared in upper case
with runs of spaces collapsed. What a code maps to is *added* to the call: concerns are unioned
with the call taker's and flags OR-ed, so a mapping can raise safety but never lower it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain import apco, mpds
from domain.code_effects import CodeEffect
from schemas.calls import CallReceived, Concern

Builtin = Literal["mpds", "apco"]
CodeField = Literal["nature_code", "mpds_code", "incident_type_common"]
CODE_FIELDS: tuple[CodeField, ...] = ("nature_code", "mpds_code", "incident_type_common")
OTHER_CENTERS_LABEL = "other"
# Each center remembers what its codes resolved to; input is unbounded, so the memory is too.
_MEMO_LIMIT = 4096


def normalise_code(code: str) -> str:
    """The form codes are compared in: upper case, surrounding spaces dropped, inner runs collapsed."""
    return " ".join(code.upper().split())


class PatternRule(CodeEffect):
    """A regular expression (matched against the whole normalised code) and what it means."""

    pattern: Annotated[str, Field(min_length=1, max_length=500)]

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {pattern!r} ({exc})") from exc
        return pattern

    @cached_property
    def regex(self) -> re.Pattern[str]:
        """The compiled pattern, matched case-insensitively against the whole normalised code."""
        return re.compile(self.pattern, re.IGNORECASE)


@dataclass(frozen=True)
class CodeMatch:
    """What a code resolved to, and by which entry (for reasons and for the unmapped report)."""

    effect: CodeEffect
    source: str


class CenterCodes(BaseModel):
    """One center's code list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    builtin: frozenset[Builtin] = frozenset({"mpds", "apco"})
    codes: dict[str, CodeEffect] = Field(default_factory=dict)
    known: frozenset[str] = frozenset()
    prefixes: dict[str, CodeEffect] = Field(default_factory=dict)
    patterns: tuple[PatternRule, ...] = ()

    @field_validator("codes", "prefixes")
    @classmethod
    def _normalised_keys(cls, entries: dict[str, CodeEffect]) -> dict[str, CodeEffect]:
        normalised: dict[str, CodeEffect] = {}
        for key, effect in entries.items():
            code = normalise_code(key)
            if not code:
                raise ValueError("an empty code")
            if code in normalised:
                raise ValueError(f"{key!r} is listed twice (codes compare in upper case, spaces collapsed)")
            normalised[code] = effect
        return normalised

    @field_validator("known")
    @classmethod
    def _normalised_known(cls, known: frozenset[str]) -> frozenset[str]:
        normalised = frozenset(normalise_code(code) for code in known)
        if "" in normalised:
            raise ValueError("an empty code")
        return normalised

    @model_validator(mode="after")
    def _known_means_nothing(self) -> CenterCodes:
        both = sorted(self.known & self.codes.keys())
        if both:
            raise ValueError(f"codes listed both in 'known' (no meaning) and in 'codes': {both}")
        return self

    @cached_property
    def _prefixes_longest_first(self) -> tuple[tuple[str, CodeEffect], ...]:
        return tuple(sorted(self.prefixes.items(), key=lambda item: -len(item[0])))

    @cached_property
    def _memo(self) -> dict[str, CodeMatch | None]:
        return {}

    def resolve(self, code: str) -> CodeMatch | None:
        """What ``code`` means for this center, or ``None`` when nothing recognises it."""
        key = normalise_code(code)
        memo = self._memo
        if key in memo:
            return memo[key]
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        found = memo[key] = self._resolve(key)
        return found

    def _resolve(self, key: str) -> CodeMatch | None:
        if key in self.codes:
            return CodeMatch(self.codes[key], "code")
        if key in self.known:
            return CodeMatch(CodeEffect(), "known")
        for prefix, effect in self._prefixes_longest_first:
            if key.startswith(prefix):
                return CodeMatch(effect, f"prefix {prefix}")
        for rule in self.patterns:
            if rule.regex.fullmatch(key):
                return CodeMatch(rule, f"pattern {rule.pattern}")
        if "mpds" in self.builtin and (determinant := mpds.parse_determinant(key)) is not None:
            return CodeMatch(mpds.determinant_effect(determinant), "mpds")
        if "apco" in self.builtin and (incident_type := apco.incident_type_effect(key)) is not None:
            return CodeMatch(incident_type, "apco")
        return None


class NatureCodeSettings(BaseModel):
    """The ``[nature_codes]`` section of a policy: a code list per center, and one for the others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: CenterCodes = Field(default_factory=CenterCodes)
    centers: dict[Annotated[str, Field(min_length=1, max_length=64)], CenterCodes] = Field(default_factory=dict)

    def for_center(self, center_id: str) -> CenterCodes:
        """The code list ``center_id``'s calls are read with (``default`` for a center not listed)."""
        return self.centers.get(center_id, self.default)

    def metric_label(self, center_id: str) -> str:
        """A bounded metric label for ``center_id``: itself when the policy lists it, else ``other``."""
        return center_id if center_id in self.centers else OTHER_CENTERS_LABEL


@dataclass(frozen=True)
class CodeRef:
    """One code of one call, by field: ``nature_code:EDPX``."""

    field: CodeField
    code: str

    def __str__(self) -> str:
        return f"{self.field}:{self.code}"


@dataclass(frozen=True)
class MappedCodes:
    """What a call's codes added to it, why, and which of its codes nothing recognised."""

    concerns: frozenset[Concern]
    flags: frozenset[str]
    reasons: tuple[str, ...]
    unmapped: tuple[CodeRef, ...]


NOTHING_MAPPED = MappedCodes(frozenset(), frozenset(), (), ())


def call_codes(call: CallReceived) -> Iterable[CodeRef]:
    """The codes a call carries, in the order they are read: nature code, MPDS, APCO common type."""
    for field in CODE_FIELDS:
        code = getattr(call, field, None)
        if code:
            yield CodeRef(field, code)


def map_call_codes(call: CallReceived, settings: NatureCodeSettings, explicit_flags: Iterable[str]) -> MappedCodes:
    """Read ``call``'s codes with its center's list.

    Returns the concerns and flags the codes add beyond what the call taker recorded (concerns
    in ``call.concerns`` and ``explicit_flags``), one reason per addition
    (``nature_code:25B6V -> violence_or_threat_to_others``), and the codes nothing recognised.
    """
    center = settings.for_center(call.center_id)
    concerns: set[Concern] = set()
    flags: set[str] = set()
    reasons: list[str] = []
    unmapped: list[CodeRef] = []
    explicit = set(explicit_flags)
    for ref in call_codes(call):
        found = center.resolve(ref.code)
        if found is None:
            unmapped.append(ref)
            continue
        for concern in sorted(found.effect.concerns):
            if concern not in call.concerns and concern not in concerns:
                concerns.add(concern)
                reasons.append(f"{ref} -> {concern.value}")
        for flag in sorted(found.effect.flags):
            if flag not in explicit and flag not in flags:
                flags.add(flag)
                reasons.append(f"{ref} -> {flag}")
    if not reasons and not unmapped:
        return NOTHING_MAPPED
    return MappedCodes(frozenset(concerns), frozenset(flags), tuple(reasons), tuple(unmapped))
