"""What a CAD code means for triage: behavioral-health concerns and safety flags it adds to a call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.calls import Concern

# The safety flags of ``call.received``, which a code may raise (``domain.policy.SafetyFlag`` is this
# same list: declared here because the policy imports this module).
MappedFlag = Literal[
    "weapon_present",
    "violence_or_threat_to_others",
    "crime_in_progress",
    "medical_emergency",
    "imminent_risk_to_self",
    "caller_requests_police",
]


class CodeEffect(BaseModel):
    """The concerns and safety flags one code contributes. Both empty: a known code with no
    behavioral-health meaning (it is recognised, so it is not counted as unmapped)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concerns: frozenset[Concern] = frozenset()
    flags: frozenset[MappedFlag] = frozenset()

    @classmethod
    def of(cls, concerns: Iterable[str] = (), flags: Iterable[str] = ()) -> CodeEffect:
        """Build from plain names (validated like a policy file's entries)."""
        return cls.model_validate({"concerns": sorted(concerns), "flags": sorted(flags)})

    @property
    def empty(self) -> bool:
        """Whether the code means nothing for triage (known, no concern or flag)."""
        return not self.concerns and not self.flags


NO_EFFECT = CodeEffect()
