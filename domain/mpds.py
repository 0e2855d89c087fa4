"""MPDS determinant codes: parsing, and what the behavioral-health protocols mean for triage.

A Medical Priority Dispatch System determinant is ``<protocol><level><number>[suffix]``: protocol
(chief complaint) 1-99, level ``O`` (Omega, also written ``Ω``), ``A`` (Alpha), ``B`` (Bravo),
``C`` (Charlie), ``D`` (Delta), ``E`` (Echo) from low to high acuity, a number, and an optional
one-letter suffix whose meaning depends on the protocol. CADs write it as ``25B6V``, ``25-B-6V``
or ``25-B-6-V``; all parse to the same determinant.

Only the meaning of the protocols a crisis program acts on is encoded here (README, "Nature codes
and MPDS determinants"). The determinant tables are (c) IAED; this module holds our own short
reading of the public code list, not a copy of it:

- **25 Psychiatric / abnormal behavior / suicide attempt**: concern ``mental_health``; suffix
  ``V`` violent -> ``violence_or_threat_to_others``, ``W`` weapons -> ``weapon_present``, ``B``
  both -> both flags.
- **23 Overdose / poisoning (ingestion)**: concern ``substance_use``; suffix ``I`` intentional
  -> ``suicidal_ideation`` and ``imminent_risk_to_self`` (an intentional overdose is a suicide
  attempt), ``A`` accidental adds nothing, ``V`` and ``W`` as for protocol 25.
- **41 Caller in crisis**: concerns ``mental_health`` and ``suicidal_ideation`` only (its levels
  are not in our reference list: a center that wants flags per level maps them explicitly).

Any other well-formed determinant is recognised as carrying no behavioral-health meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from domain.code_effects import CodeEffect

# Digits, then the level letter: the protocol is every digit before the level, so "25B6V" can only
# be protocol 25. A suffix is one letter after the number.
_DETERMINANT = re.compile(r"^(\d{1,2})[-\s]?([OABCDEΩ])[-\s]?(\d{1,2})(?:[-\s]?([A-Z]))?$")

LEVELS: Final = ("O", "A", "B", "C", "D", "E")

_MENTAL = frozenset({"mental_health"})
_SUBSTANCE = frozenset({"substance_use"})
_SUICIDAL = frozenset({"suicidal_ideation"})
_SELF = frozenset({"imminent_risk_to_self"})
_MEDICAL = frozenset({"medical_emergency"})

# Protocol 25, by level and number: what each determinant adds beyond the protocol's concern.
# (level, number) -> (extra concerns, flags). A number missing here falls back to its level below.
_PROTOCOL_25: Final[dict[tuple[str, int], tuple[frozenset[str], frozenset[str]]]] = {
    ("A", 1): (frozenset(), frozenset()),  # non-suicidal and alert
    ("A", 2): (_SUICIDAL, frozenset()),  # suicidal, not threatening, alert
    ("B", 1): (frozenset(), _MEDICAL),  # serious hemorrhage
    ("B", 2): (frozenset(), _SELF),  # minor hemorrhage: self-injury under way
    ("B", 3): (_SUICIDAL, _SELF),  # threatening suicide
    ("B", 4): (_SUICIDAL, _SELF),  # jumper, threatening
    ("B", 5): (_SUICIDAL, _SELF | _MEDICAL),  # near hanging/strangulation/suffocation, breathing normally
    ("B", 6): (frozenset(), frozenset()),  # unknown status, third-party caller: nothing known yet
    ("D", 1): (frozenset(), _MEDICAL),  # not alert
    ("D", 2): (frozenset(), _SELF | _MEDICAL),  # dangerous hemorrhage
    ("D", 3): (_SUICIDAL, _SELF | _MEDICAL),  # near hanging/strangulation/suffocation, breathing difficulty
}
# Protocol 23: every Charlie, Delta and Echo determinant is possibly life-threatening (not alert,
# abnormal breathing, cocaine, narcotics, tricyclics, caustics, unknown status, unconscious, ...).
_PROTOCOL_23_MEDICAL_LEVELS: Final = frozenset({"C", "D", "E"})

_SUFFIX_FLAGS: Final[dict[int, dict[str, frozenset[str]]]] = {
    25: {
        "V": frozenset({"violence_or_threat_to_others"}),
        "W": frozenset({"weapon_present"}),
        "B": frozenset({"violence_or_threat_to_others", "weapon_present"}),
    },
    23: {
        "V": frozenset({"violence_or_threat_to_others"}),
        "W": frozenset({"weapon_present"}),
        "I": _SELF,
        "A": frozenset(),
    },
}
_SUFFIX_CONCERNS: Final[dict[int, dict[str, frozenset[str]]]] = {
    23: {"I": _SUICIDAL | _MENTAL},
}

BEHAVIORAL_PROTOCOLS: Final = frozenset({23, 25, 41})


@dataclass(frozen=True)
class Determinant:
    """One parsed MPDS determinant, e.g. protocol 25, level ``B``, number 6, suffix ``V``."""

    protocol: int
    level: str
    number: int
    suffix: str | None = None

    @property
    def canonical(self) -> str:
        """The dashed form our events use for ``mpds_code``: ``25-B-6V``."""
        return f"{self.protocol}-{self.level}-{self.number}{self.suffix or ''}"


def parse_determinant(code: str) -> Determinant | None:
    """Parse ``25B6V``, ``25-B-6V``, ``25-B-6-V``, ``23Ω1`` or ``23O1A`` (any case); ``None`` if not a determinant."""
    match = _DETERMINANT.match(code.strip().upper())
    if match is None:
        return None
    protocol, level, number, suffix = match.groups()
    if not 1 <= int(protocol) <= 99 or int(number) == 0:
        return None
    return Determinant(int(protocol), "O" if level == "Ω" else level, int(number), suffix)


def determinant_effect(determinant: Determinant) -> CodeEffect:
    """What a determinant means for triage: concerns and safety flags (empty outside protocols 23, 25, 41)."""
    protocol, level, suffix = determinant.protocol, determinant.level, determinant.suffix
    concerns: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    if protocol == 25:
        extra, flags = _PROTOCOL_25.get((level, determinant.number), _level_fallback(level))
        concerns = _MENTAL | extra
    elif protocol == 23:
        concerns = _SUBSTANCE
        flags = _MEDICAL if level in _PROTOCOL_23_MEDICAL_LEVELS else frozenset()
    elif protocol == 41:
        concerns = _MENTAL | _SUICIDAL
    if suffix is not None:
        flags = flags | _SUFFIX_FLAGS.get(protocol, {}).get(suffix, frozenset())
        concerns = concerns | _SUFFIX_CONCERNS.get(protocol, {}).get(suffix, frozenset())
    return CodeEffect.of(concerns, flags)


def _level_fallback(level: str) -> tuple[frozenset[str], frozenset[str]]:
    """A protocol-25 number this table does not list (another MPDS version): judged by its level alone."""
    return frozenset(), (_MEDICAL if level in ("C", "D", "E") else frozenset())
