"""Every timer kind the pipeline runs: one line per kind."""

from __future__ import annotations

from typing import Any

from domain.policy import Policy
from domain.timers.followup import Followup
from domain.timers.kind import TimerKind
from domain.timers.sla_arrival import SlaArrival

# The kinds' classes: ``name``, ``notes`` and ``needs_decision_for`` are class attributes, so the
# metrics can create every label in advance without a policy. Events are applied in this order.
TIMER_KINDS = (
    SlaArrival,
    Followup,
)


def timer_kinds(policy: Policy) -> tuple[TimerKind[Any], ...]:
    """The kinds, configured by ``policy``."""
    return tuple(kind(policy) for kind in TIMER_KINDS)
