"""The outcome figures computed independently, straight from the generated events.

Written again from the README's definitions, without ``domain.outcomes`` or any store: each call's
events are read in time order and classified. Only the triage rules (which route a call gets, not
under test here) and the disposition -> group table are shared with the pipeline.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from domain.outcome_definitions import disposition_group
from domain.policy import Policy
from domain.triage import triage
from schemas.calls import CallReceived, Disposition

CUSTODY = {"arrested", "released_to_law_enforcement"}
HOSPITAL = {"emergency_department_voluntary", "emergency_department_involuntary",
            "transported_destination_not_recorded"}
SKIP_FOLLOWUP = {"arrested", "cancelled"}


@dataclass
class Call:
    call_id: str
    received: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # by event time
    processed: list[dict[str, Any]] = field(default_factory=list)  # in the order the pipeline reads them


def _t(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def calls_of(bodies: Iterable[dict[str, Any]]) -> dict[str, Call]:
    calls: dict[str, Call] = {}
    seen: set[str] = set()
    for body in bodies:
        if body["event_id"] in seen:  # a replayed event is the same event
            continue
        seen.add(body["event_id"])
        call = calls.setdefault(body["call_id"], Call(body["call_id"]))
        if body["type"] == "call.received":
            call.received = body
        else:
            call.events.append(body)
            call.processed.append(body)
    for call in calls.values():
        call.events.sort(key=_t)
    return calls


@dataclass
class Classified:
    """Everything the reports count about one call."""

    key: tuple[str, date, int, str, str]  # center, local day, local hour, district, route
    measures: Counter[str]
    response: str | None = None
    dispatch_to_arrival: float | None = None
    request_to_arrival: float | None = None
    on_scene: float | None = None
    phone: str | None = None
    behavioral_health: bool = False
    received_at: datetime | None = None


def classify(call: Call, policy: Policy) -> Classified | None:
    if call.received is None:
        return None
    r = call.received
    received_at = datetime.fromisoformat(r["occurred_at"])
    rules = triage(CallReceived.model_validate_json(json.dumps(r)), policy)
    if rules.route.value == "diversion_line":
        route = "diversion_line"
    elif rules.route.value == "co_responder":
        route = "co_responder"
    elif rules.second_response_requested:
        route = "second_response"
    else:
        route = "not_eligible"
    local = received_at.astimezone(policy.zone)
    out = Classified((r["center_id"], local.date(), local.hour, r["district"], route), Counter(),
                     phone=r.get("caller_phone"), received_at=received_at,
                     behavioral_health=bool(set(r["concerns"]) & {c.value for c in policy.behavioral_health_concerns}))
    m = out.measures
    m["calls"] += 1
    if out.behavioral_health:
        m["behavioral_health"] += 1
    m[f"route:{route}"] += 1

    current = route
    team_dispatch = team_arrival = close = police = None
    disposition = cad_reason = None
    field_dispatch = field_arrival = False
    overridden_at = None
    attempts, reached = 0, False
    completion = None  # (time, linkage)
    for e in call.events:
        t = _t(e)
        if e["type"] == "triage.overridden":
            current = "co_responder" if e["route"] == "co_responder" else e["route"]
            if current == "emergency":
                current = "not_eligible"
                overridden_at = overridden_at or t
        elif e["type"] == "unit.dispatched":
            field_dispatch = True
            if e["unit_type"] == "co_responder" and team_dispatch is None:
                team_dispatch = t
            if e["unit_type"] == "police" and police is None:
                police = t
        elif e["type"] == "unit.arrived":
            field_arrival = True
            if e["unit_type"] == "co_responder" and team_arrival is None:
                team_arrival = t
        elif e["type"] == "call.closed" and close is None:
            close, disposition, cad_reason = t, e["disposition"], e.get("unserved_reason")
        elif e["type"] == "followup.attempted":
            attempts += 1
            reached = reached or e["attempt_result"] in ("reached", "declined")
            if e["attempt_result"] == "declined" and completion is None:
                completion = (t, "declined")
        elif e["type"] == "followup.completed" and completion is None:
            completion = (t, e["linkage"])

    if route == "not_eligible":
        return _followup_and_return(out, call, policy, None, close, disposition, attempts, reached, completion)
    m["eligible"] += 1
    if team_arrival is not None:
        status, reason = "served", None
    elif current == "not_eligible":
        status, reason = "unserved", "overridden_by_dispatcher"
    elif close is None:
        status, reason = "open", None
    elif current == "diversion_line":
        if disposition == "cancelled":
            status, reason = "unserved", cad_reason or "cancelled_before_contact"
        elif disposition == "unable_to_contact":
            status, reason = "unserved", cad_reason or "not_reached"
        else:
            status, reason = "served", None
    elif team_dispatch is not None:
        status, reason = "unserved", ("cancelled_before_arrival" if disposition == "cancelled"
                                      else "closed_before_arrival")
    else:
        status, reason = "unserved", cad_reason or "never_dispatched"
    m[f"status:{status}"] += 1
    if reason:
        m[f"unserved:{reason}"] += 1
    if route == "diversion_line":
        m["transferred"] += 1
        if status == "served" and current == "diversion_line" and not field_dispatch:
            m["resolved_without_field_unit"] += 1
    response = {"co_responder": "first", "second_response": "second"}.get(route)
    if response:
        m["team_requested"] += 1
        if team_dispatch is not None or team_arrival is not None:
            m["team_dispatched"] += 1
        if team_arrival is not None:
            m["team_arrived"] += 1
    if close is not None:
        group = disposition_group(Disposition(disposition), field_arrival).value
        m["closed"] += 1
        m[f"disposition:{group}"] += 1
        if status == "served":
            m["served_closed"] += 1
            if group not in CUSTODY:
                m["diverted_from_jail"] += 1
            if group not in HOSPITAL:
                m["diverted_from_hospital"] += 1
    if police is not None and route in ("diversion_line", "co_responder") and current in (
            "diversion_line", "co_responder"):
        m["police_backup"] += 1
    if response:
        m[f"sla_requests:{response}"] += 1
        sla = policy.sla[response]  # type: ignore[index]
        breach_at = received_at + sla.breach_after
        # The arrival timer stops at the first arrival, close or override away *as they are read*: an
        # arrival the CAD reports after the call was closed changes no SLA outcome.
        stop, stopped_by = None, None
        for e in call.processed:
            if (e["type"] == "unit.arrived" and e["unit_type"] == "co_responder") or e["type"] == "call.closed" or (
                    e["type"] == "triage.overridden" and e["route"] == "emergency" and response == "first"):
                stop, stopped_by = _t(e), e["type"]
                break
        if stopped_by == "unit.arrived" and stop <= breach_at:  # type: ignore[operator]
            m[f"sla_met:{response}"] += 1
        elif stop is None or breach_at < stop:
            m[f"sla_breached:{response}"] += 1
        if team_arrival is not None:
            out.response = response
            if team_dispatch is not None and team_dispatch <= team_arrival:
                out.dispatch_to_arrival = (team_arrival - team_dispatch).total_seconds()
            out.request_to_arrival = (team_arrival - received_at).total_seconds()
            if close is not None and team_arrival <= close:
                out.on_scene = (close - team_arrival).total_seconds()
    contact = {"diversion_line": "x", "co_responder": "x", "second_response": "x"}.get(current)
    return _followup_and_return(out, call, policy, contact, close, disposition, attempts, reached, completion)


def _followup_and_return(out: Classified, call: Call, policy: Policy, contact: str | None, close: datetime | None,
                         disposition: str | None, attempts: int, reached: bool,
                         completion: tuple[datetime, str] | None) -> Classified:
    if contact is None or close is None or disposition in SKIP_FOLLOWUP:
        return out
    m = out.measures
    m["followup_contacts"] += 1
    expires = close + timedelta(days=policy.followup.expire_after_days)
    no_answers = [e for e in call.events if e["type"] == "followup.attempted"
                  and e["attempt_result"] in ("no_answer", "left_message", "wrong_number")]
    dropped = len(no_answers) >= policy.followup.attempts_before_dropout and not reached
    if completion is not None and completion[0] <= expires:
        when, linkage = completion
        if linkage == "declined":
            m["followup_status:declined"] += 1
        else:
            m["followup_status:completed"] += 1
            days = round((when - close).total_seconds() / 86400, 4)
            for window, limit in (("48h", 2), ("7d", 7), ("30d", 30)):
                if days <= limit:
                    m[f"followup_completed_{window}"] += 1
            m[f"linkage:{linkage}"] += 1
    elif dropped:
        m["followup_status:dropped_out"] += 1
    else:
        m["followup_status:expired"] += 1  # the test moves event time past every window
    if attempts:
        m["followup_attempts"] += attempts
    if reached or completion is not None:
        m["followup_reached"] += 1
    return out


def classify_all(bodies: Iterable[dict[str, Any]], policy: Policy) -> list[Classified]:
    return [c for call in calls_of(bodies).values() if (c := classify(call, policy)) is not None]


def daily(classified: Iterable[Classified]) -> dict[tuple[Any, ...], int]:
    """The aggregates, keyed as outcome_daily: (center, day, hour, district, route, measure)."""
    out: Counter[tuple[Any, ...]] = Counter()
    for c in classified:
        for measure, n in c.measures.items():
            if n:
                out[(*c.key, measure)] += n
    return {key: n for key, n in out.items() if n}


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(max(math.ceil(p * len(ordered)), 1), len(ordered)) - 1]


def week_of(day: date) -> str:
    return f"week:{(day - timedelta(days=day.weekday())).isoformat()}"


def repeats(classified: list[Classified], start: date, end: date, policy: Policy, group: Any
            ) -> dict[str, Counter[str]]:
    """people / repeat_30d / repeat_90d by report column (``group(c)``) and ``all``."""
    by_phone: dict[str, list[Classified]] = defaultdict(list)
    for c in classified:
        if c.phone and c.behavioral_health:
            by_phone[c.phone].append(c)
    people: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for phone, contacts in by_phone.items():
        contacts.sort(key=lambda c: c.received_at)  # type: ignore[arg-type, return-value]
        previous = None
        for c in contacts:
            day = c.received_at.astimezone(policy.zone).date()  # type: ignore[union-attr]
            if start <= day <= end:
                for column in ("all", group(c)):
                    people[column]["people"].add(phone)
                    if previous is not None:
                        gap = c.received_at - previous  # type: ignore[operator]
                        if gap <= timedelta(days=30):
                            people[column]["repeat_30d"].add(phone)
                        if gap <= timedelta(days=90):
                            people[column]["repeat_90d"].add(phone)
            previous = c.received_at
    return {column: Counter({k: len(v) for k, v in kinds.items()}) for column, kinds in people.items()}


def bodies_of(values: Iterable[bytes]) -> list[dict[str, Any]]:
    return [json.loads(v) for v in values]
