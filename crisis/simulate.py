"""A seeded synthetic city: the call events a 911 center's CAD would send us.

The mix follows the published figures in the README ("Simulator"): most calls the dispatcher flags
carry a behavioral-health concern, a minority carry safety flags, arrivals follow a daily cycle,
co-responder teams are sometimes late (so SLAs breach), and every call closes with a disposition.
Contacts the policy follows up get follow-up attempts over the following days: many first
attempts go unanswered, some people are reached and linked to care, some decline, some drop out
after the last attempt, and some attempts come late or never (overdue, expired).
The same seed always gives the same stream, event ids included.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.policy import Policy
from domain.timers.followup import contact_for
from domain.triage import triage
from schemas.calls import AttemptResult, CallReceived, Channel, Concern, Disposition, Linkage
from schemas.triage import Route

DISTRICTS = ("district-1", "district-2", "district-3", "district-4", "district-5", "district-6")
# The center's nature code follows the call's main concern, so a code the policy maps (INTOX and
# WELFARE are APCO common types) never adds a concern the simulated call taker did not record.
NATURE_CODES: dict[Concern | None, tuple[str, ...]] = {
    None: ("TRESPASS", "DISTURB"),
    Concern.MENTAL_HEALTH: ("MENTAL",),
    Concern.SUBSTANCE_USE: ("INTOX",),
    Concern.SUICIDAL_IDEATION: ("SUICID",),
    Concern.TRAUMA: ("MENTAL",),
    Concern.QUALITY_OF_LIFE: ("NUISANCE",),
    Concern.SELF_SUFFICIENCY: ("ASSIST",),
    Concern.WELFARE_CHECK: ("WELFARE", "CHECKWEL"),
}
# MPDS determinants that add nothing beyond the concern (no safety flag): the flags are drawn
# separately, at the published rates.
MPDS_CODES: dict[Concern | None, tuple[str | None, ...]] = {
    Concern.MENTAL_HEALTH: ("25-A-1", "25-B-6", None),
    Concern.SUICIDAL_IDEATION: ("25-A-2", None),
}

# Relative call volume by local hour: quiet before dawn, busiest in the afternoon and evening.
HOURLY_WEIGHT = (0.45, 0.4, 0.35, 0.3, 0.3, 0.35, 0.5, 0.7, 0.9, 1.0, 1.1, 1.15,
                 1.2, 1.25, 1.3, 1.35, 1.4, 1.45, 1.4, 1.3, 1.2, 1.0, 0.8, 0.6)

# Share of flagged calls with each safety flag (independent draws).
FLAG_RATES = {
    "weapon_present": 0.05,
    "violence_or_threat_to_others": 0.08,
    "medical_emergency": 0.06,
    "imminent_risk_to_self": 0.07,
    "crime_in_progress": 0.04,
    "caller_requests_police": 0.05,
}
CONCERN_WEIGHTS = {
    Concern.MENTAL_HEALTH: 0.45,
    Concern.SUBSTANCE_USE: 0.2,
    Concern.SUICIDAL_IDEATION: 0.15,
    Concern.TRAUMA: 0.06,
    Concern.QUALITY_OF_LIFE: 0.06,
    Concern.SELF_SUFFICIENCY: 0.04,
    Concern.WELFARE_CHECK: 0.04,
}
PHONE_DISPOSITIONS = (Disposition.RESOLVED_BY_PHONE, Disposition.SAFETY_PLAN, Disposition.LINKED_TO_SERVICES)
SCENE_DISPOSITIONS = (
    Disposition.STABILIZED_ON_SCENE, Disposition.SAFETY_PLAN, Disposition.DIVERTED_FROM_JAIL,
    Disposition.DIVERTED_FROM_HOSPITAL, Disposition.LINKED_TO_SERVICES, Disposition.TRANSPORTED,
)
EMERGENCY_DISPOSITIONS = (Disposition.TRANSPORTED, Disposition.ARRESTED, Disposition.STABILIZED_ON_SCENE)
# Where a transport went, and whether an arrest was a release to law enforcement (outcome reports).
TRANSPORT_DESTINATIONS: tuple[tuple[Disposition, float], ...] = (
    (Disposition.TRANSPORTED_TO_CRISIS_CENTER, 0.35), (Disposition.TRANSPORTED_TO_COMMUNITY_LOCATION, 0.2),
    (Disposition.TRANSPORTED_TO_EMERGENCY_DEPARTMENT, 0.25), (Disposition.INVOLUNTARY_HOLD, 0.1),
    (Disposition.TRANSPORTED, 0.1),
)
UNSERVED_TEAM_REASONS = ("no_team_available", "declined_by_team", "caller_declined", "unable_to_locate", None)

# Follow-up attempts: what each reaches (weights). Crisis follow-up calls often go unanswered.
ATTEMPT_RESULTS = {
    AttemptResult.NO_ANSWER: 0.40, AttemptResult.LEFT_MESSAGE: 0.17, AttemptResult.REACHED: 0.33,
    AttemptResult.DECLINED: 0.06, AttemptResult.WRONG_NUMBER: 0.04,
}
LINKAGES = {
    Linkage.OUTPATIENT_MENTAL_HEALTH: 0.3, Linkage.SUBSTANCE_USE_TREATMENT: 0.15, Linkage.CRISIS_STABILIZATION: 0.05,
    Linkage.PRIMARY_CARE: 0.1, Linkage.HOUSING_OR_SOCIAL_SERVICES: 0.1, Linkage.PEER_SUPPORT: 0.1,
    Linkage.NONE_NEEDED: 0.15, Linkage.DECLINED: 0.05,
}


DEFAULT_START_AT = datetime(2025, 1, 6, 6, 0, tzinfo=UTC)  # a Monday morning


@dataclass(frozen=True)
class SimulatedEvent:
    """One event ready to publish: key, JSON value and its event time (for ordering and pacing)."""

    occurred_at: datetime
    key: str
    value: bytes
    type: str


@dataclass(frozen=True)
class CitySettings:
    calls_per_hour: float = 60.0
    behavioral_health_share: float = 0.85  # of calls the dispatcher flagged for us
    caller_in_crisis_share: float = 0.55
    late_team_share: float = 0.12  # co-responder teams arriving after the breach deadline
    juvenile_share: float = 0.08
    close_calls: bool = True
    followups: bool = True  # follow-up attempts and completions after contacts the policy follows up
    attempt_skipped_share: float = 0.1  # a due attempt nobody makes (overdue)
    completion_share: float = 0.85  # of people reached, those whose follow-up is completed with a linkage
    # Outcomes (drawn from a second random stream per call, so every other draw stays as it was):
    unserved_team_share: float = 0.08  # team calls the team never reached (never dispatched, or closed first)
    unreached_line_share: float = 0.06  # diversion-line calls cancelled or never reached by phone
    police_backup_share: float = 0.05  # co-responder calls where the team asked for police backup
    # Co-responder calls a dispatcher moves to emergency before dispatch. Off by default: an override is
    # stored as a decision, not a lifecycle event, and the demo and the SLA tests count lifecycle events.
    override_away_share: float = 0.0


def _event(kind: str, call_id: str, seq: int, at: datetime, **fields: object) -> SimulatedEvent:
    body = {"type": kind, "event_id": f"{call_id}-{seq}", "call_id": call_id,
            "occurred_at": at.isoformat(), **fields}
    return SimulatedEvent(at, call_id, json.dumps(body, separators=(",", ":")).encode(), kind)


class City:
    """Generates calls and their lifecycles; iterate ``events`` for a time-ordered stream."""

    def __init__(self, policy: Policy, seed: int = 7, settings: CitySettings | None = None,
                 start_at: datetime | None = None, run_tag: str = "") -> None:
        self.policy = policy
        self.rng = random.Random(seed)
        self.settings = settings or CitySettings()
        # Fixed, so a seed always gives the same stream; far enough in the past that about two years of
        # calls at the default rate end before today (the worker refuses events dated in the future).
        self.start_at = start_at or DEFAULT_START_AT
        self.seed = seed
        # Every call id starts with this: runs with different tags never collide in one database.
        # Call ids are scoped by center ("<center_id>:<incident>", README "For dispatch-center integrators").
        self.call_prefix = f"stl-911:sim{seed}-{run_tag}-" if run_tag else f"stl-911:sim{seed}-"

    def _next_gap(self, at: datetime) -> timedelta:
        hour = at.astimezone(self.policy.zone).hour
        rate_per_second = self.settings.calls_per_hour * HOURLY_WEIGHT[hour] / 3600
        return timedelta(seconds=self.rng.expovariate(rate_per_second))

    def call(self, number: int, at: datetime) -> list[SimulatedEvent]:
        """One call's events, starting with ``call.received`` at ``at``."""
        rng, s = self.rng, self.settings
        call_id = f"{self.call_prefix}{number:07d}"
        concerns: list[str] = []
        if rng.random() < s.behavioral_health_share:
            concerns = [str(rng.choices(list(CONCERN_WEIGHTS), list(CONCERN_WEIGHTS.values()))[0])]
            if rng.random() < 0.25:
                concerns.append(str(Concern.SUBSTANCE_USE))
        flags = {flag: rng.random() < rate for flag, rate in FLAG_RATES.items()}
        main_concern = Concern(concerns[0]) if concerns else None
        received = {
            "center_id": "stl-911",
            "nature_code": rng.choice(NATURE_CODES[main_concern]),
            "mpds_code": rng.choice(MPDS_CODES.get(main_concern, (None,))),
            "concerns": sorted(set(concerns)),
            **flags,
            "person_in_crisis_is_caller": rng.random() < s.caller_in_crisis_share,
            "juvenile": rng.random() < s.juvenile_share,
            "district": rng.choice(DISTRICTS),
            "caller_phone": f"+1314555{rng.randrange(10000):04d}",
        }
        events = [_event("call.received", call_id, 0, at, **received)]
        outcome = random.Random(f"{self.seed}:{number}:outcome")  # its own stream: see CitySettings
        decision = triage(CallReceived.model_validate({"type": "call.received", "event_id": "x",
                                                       "call_id": call_id, "occurred_at": at, **received}),
                          self.policy)
        seq = 1
        closed_at = at + timedelta(minutes=rng.uniform(15, 50))
        close_fields: dict[str, object] = {}
        if decision.route is Route.DIVERSION_LINE:
            closed_at = at + timedelta(minutes=rng.uniform(8, 35))
            disposition = rng.choice(PHONE_DISPOSITIONS)
            if outcome.random() < s.unreached_line_share:
                disposition = outcome.choice((Disposition.UNABLE_TO_CONTACT, Disposition.CANCELLED))
        else:
            team_wanted = decision.route is Route.CO_RESPONDER or decision.second_response_requested
            if decision.route is Route.EMERGENCY:
                police_arrival = at + timedelta(minutes=rng.uniform(4, 12))
                events.append(_event("unit.dispatched", call_id, seq, at + timedelta(seconds=40),
                                     unit_id=f"P{rng.randrange(100, 999)}", unit_type="police"))
                events.append(_event("unit.arrived", call_id, seq + 1, police_arrival,
                                     unit_id=f"P{rng.randrange(100, 999)}", unit_type="police"))
                seq += 2
            served = True
            if team_wanted:
                sla = self.policy.sla["second" if decision.route is Route.EMERGENCY else "first"]  # type: ignore[index]
                if rng.random() < s.late_team_share:
                    delay = sla.breach_after_seconds * rng.uniform(1.05, 1.6)
                else:
                    delay = min(sla.breach_after_seconds * 0.98, rng.lognormvariate(math.log(420), 0.35))
                unit = f"CRU{rng.randrange(1, 9)}"
                dispatched_at = at + timedelta(seconds=rng.uniform(30, 120))
                on_scene = rng.uniform(600, 2400)
                unserved = outcome.random() < s.unserved_team_share
                overridden = (not unserved and decision.route is Route.CO_RESPONDER
                              and outcome.random() < s.override_away_share)
                if overridden:  # a dispatcher sends police/EMS instead, before the team is dispatched
                    events.append(_event("triage.overridden", call_id, seq, at + timedelta(seconds=20),
                                         route="emergency", overridden_by=f"dispatcher-{outcome.randrange(1, 40)}",
                                         reason="caller became violent"))
                    seq += 1
                    served = False
                elif unserved and outcome.random() < 0.5:  # dispatched, then closed before the team got there
                    events.append(_event("unit.dispatched", call_id, seq, dispatched_at, unit_id=unit,
                                         unit_type="co_responder"))
                    seq += 1
                    closed_at = dispatched_at + timedelta(seconds=outcome.uniform(60, max(90.0, delay - 90)))
                    served = False
                elif unserved:  # never dispatched: the CAD records why, or not
                    reason = outcome.choice(UNSERVED_TEAM_REASONS)
                    if reason is not None:
                        close_fields["unserved_reason"] = reason
                    served = False
                else:
                    events.append(_event("unit.dispatched", call_id, seq, dispatched_at,
                                         unit_id=unit, unit_type="co_responder"))
                    events.append(_event("unit.arrived", call_id, seq + 1, at + timedelta(seconds=delay),
                                         unit_id=unit, unit_type="co_responder"))
                    seq += 2
                    closed_at = max(closed_at, at + timedelta(seconds=delay + on_scene))
                    if decision.route is Route.CO_RESPONDER and outcome.random() < s.police_backup_share:
                        events.append(_event("unit.dispatched", call_id, seq, at + timedelta(seconds=delay + 120),
                                             unit_id=f"P{outcome.randrange(100, 999)}", unit_type="police"))
                        seq += 1
            disposition = rng.choice(SCENE_DISPOSITIONS if team_wanted else EMERGENCY_DISPOSITIONS)
            if team_wanted and not served:
                disposition = (Disposition.CANCELLED if "unserved_reason" not in close_fields
                               and outcome.random() < 0.5 else outcome.choice(EMERGENCY_DISPOSITIONS))
            disposition = self._refine(disposition, outcome)
        if s.close_calls:
            events.append(_event("call.closed", call_id, seq, closed_at, disposition=str(disposition),
                                 **close_fields))
            contact = contact_for(decision.route, decision.second_response_requested)
            followup = self.policy.followup
            if (s.followups and contact is not None and contact in followup.contacts
                    and disposition not in followup.skip_dispositions):
                events.extend(self._followups(call_id, seq + 1, closed_at))
        return events

    def _followups(self, call_id: str, seq: int, closed_at: datetime) -> list[SimulatedEvent]:
        """Attempts until the person is reached, declines, or the schedule runs out; then maybe a completion."""
        rng, settings, events = self.rng, self.policy.followup, []
        results, weights = list(ATTEMPT_RESULTS), list(ATTEMPT_RESULTS.values())
        previous = closed_at
        for number in range(1, settings.attempts_before_dropout + 1):
            if rng.random() < self.settings.attempt_skipped_share:
                return events  # nobody makes this attempt: it becomes overdue, then the follow-up expires
            due = closed_at + settings.attempt_due_after(number)
            # Mostly before the due time, sometimes a little after it (within or past the grace period).
            at = max(previous + timedelta(minutes=30), due - timedelta(hours=rng.uniform(-6, 20)))
            result = rng.choices(results, weights)[0]
            events.append(_event("followup.attempted", call_id, seq, at, attempt_result=str(result),
                                 attempted_by=f"clinician-{rng.randrange(1, 12)}",
                                 channel=str(rng.choice(list(Channel)))))
            seq += 1
            previous = at
            if result is AttemptResult.DECLINED:
                return events
            if result is AttemptResult.REACHED:
                if rng.random() < self.settings.completion_share:
                    linkage = rng.choices(list(LINKAGES), list(LINKAGES.values()))[0]
                    events.append(_event("followup.completed", call_id, seq, at + timedelta(hours=rng.uniform(0.5, 72)),
                                         linkage=str(linkage), completed_by=f"clinician-{rng.randrange(1, 12)}"))
                return events
        return events

    @staticmethod
    def _refine(disposition: Disposition, outcome: random.Random) -> Disposition:
        """Where a transport went; some arrests are releases to law enforcement (the report's outcome groups)."""
        if disposition is Disposition.TRANSPORTED:
            destinations = [destination for destination, _ in TRANSPORT_DESTINATIONS]
            return outcome.choices(destinations, [weight for _, weight in TRANSPORT_DESTINATIONS])[0]
        if disposition is Disposition.ARRESTED and outcome.random() < 0.4:
            return Disposition.RELEASED_TO_LAW_ENFORCEMENT
        return disposition

    def events(self, calls: int) -> list[SimulatedEvent]:
        """``calls`` calls and their lifecycle events, ordered by event time."""
        out: list[SimulatedEvent] = []
        at = self.start_at
        for number in range(calls):
            at += self._next_gap(at)
            out.extend(self.call(number, at))
        out.sort(key=lambda e: e.occurred_at)
        return out


def malformed_events(count: int, seed: int = 7) -> Iterator[SimulatedEvent]:
    """Records a broken integration might send: bad JSON, unknown type, missing or wrong fields."""
    samples = [
        b"{not json",
        b'{"type": "call.teleported", "event_id": "bad-1", "call_id": "x", "occurred_at": "2026-11-02T06:00:00Z"}',
        b'{"type": "call.received", "event_id": "bad-2", "call_id": "x"}',
        b'{"type": "call.received", "event_id": "bad-3", "call_id": "x", "occurred_at": "yesterday",'
        b' "center_id": "c", "nature_code": "n", "district": "d"}',
        b'{"type": "unit.arrived", "event_id": "bad-4", "call_id": "x", "occurred_at": "2026-11-02T06:00:00",'
        b' "unit_id": "u", "unit_type": "co_responder"}',
        b"",
        b'["call.received"]',
    ]
    at = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    for index in range(count):
        yield SimulatedEvent(at, f"malformed-{seed}-{index}", samples[index % len(samples)], "malformed")
