"""One handler per inbound event type: what the event means for the call, before any timer sees it.

A handler stores what its event says and returns ``None`` when the event is accepted, or a
``Refusal`` (dead-lettered with its reason) when it is not. Accepted events then go to every timer
kind (``agents.timer_book``). A new event type that only needs storing needs no handler: the
default stores it with the call's lifecycle events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.batch import BatchState
from agents.decoding import Refusal
from domain.policy import Policy
from domain.triage import decide_explained, override, override_refusal
from schemas.calls import CallEvent, CallReceived, TriageOverridden
from sinks.base import LifecycleEvent

Handler = Callable[[BatchState, Any], Refusal | None]


class EventHandlers:
    """The handlers, configured with the policy and the pseudonym key."""

    def __init__(self, policy: Policy, pseudonym_key: bytes) -> None:
        self.policy = policy
        self.pseudonym_key = pseudonym_key
        self.by_type: dict[str, Handler] = {
            "call.received": self.call_received,
            "triage.overridden": self.triage_overridden,
        }

    def handle(self, state: BatchState, event: CallEvent) -> Refusal | None:
        return self.by_type.get(event.type, self.lifecycle)(state, event)

    def call_received(self, state: BatchState, call: CallReceived) -> Refusal | None:
        """Triage the call: the decision is stored and published, and starts what it requests.

        A second copy of an event this batch already decided changes nothing, whatever its content:
        the store keeps the first (``ON CONFLICT DO NOTHING``), so the timers follow the first too.
        """
        if call.event_id in state.decided_events:
            return None
        state.decided_events.add(call.event_id)
        decision, result = decide_explained(call, self.policy, self.pseudonym_key)
        if result.unmapped_codes:
            state.unmapped_codes.append((decision.event_id, self.policy.nature_codes.metric_label(call.center_id),
                                         len(result.unmapped_codes)))
        state.write.calls.append((call, decision.person_ref))
        state.write.decisions.append(decision)
        state.latest[call.call_id] = decision
        return None

    def triage_overridden(self, state: BatchState, event: TriageOverridden) -> Refusal | None:
        """A dispatcher's override, refused when it lowers police involvement on a call with a
        safety flag without an approver the policy allows."""
        current = state.latest.get(event.call_id)
        if current is None:
            return Refusal("unknown_call", f"override for call {event.call_id!r}, which has no triage decision "
                                           "(call.received not seen)", "handle", "UnknownCall")
        if (refusal := override_refusal(current, event, self.policy)) is not None:
            return Refusal("override_refused", refusal, "handle", "OverrideRefused")
        decision = override(current, event)
        state.write.decisions.append(decision)
        state.latest[event.call_id] = decision
        return None

    @staticmethod
    def lifecycle(state: BatchState, event: LifecycleEvent) -> Refusal | None:
        """Dispatches, arrivals, closes and follow-up events: stored as the call's lifecycle."""
        state.write.lifecycle.append(event)
        return None
