"""The triage rules: a pure function from a call and a policy to a route with its reasons."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, field

from domain.nature_codes import CodeRef, map_call_codes
from domain.policy import SAFETY_FLAGS, Policy
from schemas.calls import CallReceived, TriageOverridden
from schemas.triage import Route, TriageDecision

# Namespace for deterministic ids of the events we emit (uuid5 of a stable name).
EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c1e-5a4b-4e58-9a7c-2f0c8d1e7b90")


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def deterministic_id(*parts: str) -> str:
    """A stable event id for what we emit: replaying the same input yields the same id.

    Exactly ``str(uuid.uuid5(EVENT_ID_NAMESPACE, "|".join(parts)))``, computed without building
    UUID objects: it runs for every event we emit.
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "|".join(parts).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NOT_DIGITS = re.compile(r"\D")


def person_ref(caller_phone: str | None, key: bytes) -> str | None:
    """A pseudonymous, keyed reference to the caller: links a person's calls without their number."""
    if not caller_phone:
        return None
    digits = _NOT_DIGITS.sub("", caller_phone)
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()[:20]


@dataclass(frozen=True)
class Triage:
    """What the rules decided and why, before it is wrapped into a published event."""

    route: Route
    reasons: tuple[str, ...]
    second_response_requested: bool
    # The safety flags the call has: the call taker's, and those its codes mean (an override lowering
    # police involvement on such a call needs an approver). A fact about the call, not a choice of the
    # rules: two triages with the same route and reasons are equal.
    safety_flags: tuple[str, ...] = field(default=(), compare=False)
    # The call's codes that nothing in its center's mapping recognised (crisis_triage_unmapped_nature_codes_total).
    # A diagnostic, not part of the decision: two triages with the same route and reasons are equal.
    unmapped_codes: tuple[CodeRef, ...] = field(default=(), compare=False)


def triage(call: CallReceived, policy: Policy) -> Triage:
    """Choose the route for ``call`` under ``policy``.

    First the call's codes are read with its center's mapping (``policy.nature_codes``): the
    concerns and safety flags they mean are added to what the call taker recorded (never taken
    away), each addition with a reason such as ``nature_code:25B6V -> violence_or_threat_to_others``.
    Then the rules, in order, each a published criterion (README, "Triage rules"):
    1. no behavioral-health concern -> emergency (ordinary dispatch);
    2. any emergency flag -> emergency, co-responder requested as second response;
    3. any co-responder flag, an on-scene concern or a third-party caller -> co-responder team;
    4. otherwise -> diversion line;
    then a route outside its opening hours falls back to the next route, with a reason saying so.
    """
    flags = {flag for flag in SAFETY_FLAGS if getattr(call, flag)}
    mapped = map_call_codes(call, policy.nature_codes, flags)
    flags |= mapped.flags
    concerns = call.concerns | mapped.concerns if mapped.concerns else call.concerns
    behavioral = policy.behavioral_health_concerns.intersection(concerns)

    if not behavioral:
        route, reasons = Route.EMERGENCY, ["no_behavioral_health_concern", *sorted(flags)]
    elif emergency := sorted(flags & policy.emergency_flags):
        route, reasons = Route.EMERGENCY, emergency
    else:
        reasons = sorted(flags & policy.co_responder_flags)
        if on_scene := sorted(policy.on_scene_concerns.intersection(concerns)):
            reasons += [f"{concern}_needs_on_scene" for concern in on_scene]
        if policy.third_party_caller_needs_on_scene and not call.person_in_crisis_is_caller:
            reasons.append("third_party_caller_needs_on_scene")
        if reasons:
            route = Route.CO_RESPONDER
            reasons.append("needs_on_scene_support")
        else:
            route, reasons = Route.DIVERSION_LINE, ["no_safety_flags_phone_resolvable"]

    if mapped.reasons:
        reasons = [*mapped.reasons, *reasons]
    while not policy.is_open(route, call.occurred_at):
        reasons.append(f"{route.value}_closed")
        route = policy.fallback(route)

    second_response = (
        route is Route.EMERGENCY
        and bool(behavioral)
        and bool(flags & policy.emergency_flags)
        and policy.second_response_on_emergency
    )
    if second_response:
        reasons.append("co_responder_second_response")
    return Triage(route=route, reasons=tuple(reasons), second_response_requested=second_response,
                  safety_flags=tuple(flag for flag in SAFETY_FLAGS if flag in flags), unmapped_codes=mapped.unmapped)


def decide(call: CallReceived, policy: Policy, pseudonym_key: bytes) -> TriageDecision:
    """Run the rules on ``call`` and build the decision event published to partners."""
    return decide_explained(call, policy, pseudonym_key)[0]


def decide_explained(call: CallReceived, policy: Policy, pseudonym_key: bytes) -> tuple[TriageDecision, Triage]:
    """``decide``, plus the rules' own result: its ``unmapped_codes`` feed the worker's metric."""
    result = triage(call, policy)
    return TriageDecision(
        event_id=deterministic_id("triage.decided", call.event_id, policy.name, policy.version),
        call_id=call.call_id,
        source_event_id=call.event_id,
        decided_at=call.occurred_at,
        route=result.route,
        reasons=result.reasons,
        policy_name=policy.name,
        policy_version=policy.version,
        second_response_requested=result.second_response_requested,
        center_id=call.center_id,
        district=call.district,
        person_ref=person_ref(call.caller_phone, pseudonym_key),
        safety_flags=result.safety_flags,
    ), result


def lowers_police_involvement(safety_flags: tuple[str, ...], from_route: Route, to_route: Route) -> bool:
    """Whether moving a call with these safety flags from one route to another lowers police involvement."""
    return bool(safety_flags) and to_route.rank < from_route.rank


def override_refusal(current: TriageDecision, event: TriageOverridden, policy: Policy) -> str | None:
    """Why ``event`` may not replace ``current``, or ``None`` when it may.

    The rules only ever move a call with a safety flag towards police, never away; a dispatcher may
    do so only with an approver whose role the policy names (``overrides.lower_safety_roles``).
    """
    if not lowers_police_involvement(current.safety_flags, current.route, event.route):
        return None
    roles = policy.overrides.lower_safety_roles
    if event.approved_by and event.approved_by_role in roles:
        return None
    return (f"override from {current.route.value} to {event.route.value} lowers police involvement on a call with "
            f"{', '.join(current.safety_flags)}: it needs approved_by with approved_by_role one of {sorted(roles)}")



def override(previous: TriageDecision, event: TriageOverridden) -> TriageDecision:
    """Apply a dispatcher's override to the decision it replaces; both stay on record.

    Check ``override_refusal`` first: this function does not judge whether the override is allowed.
    """
    return previous.model_copy(
        update={
            "type": "triage.overridden",
            "event_id": deterministic_id("triage.overridden", event.event_id),
            "source_event_id": event.event_id,
            "decided_at": event.occurred_at,
            "route": event.route,
            "reasons": ("dispatcher_override",),
            "second_response_requested": False,
            "previous_route": previous.route,
            "overridden_by": event.overridden_by,
            "approved_by": event.approved_by,
            "approved_by_role": event.approved_by_role,
            "override_reason": event.reason,
        }
    )
