"""Redelivery changes nothing: a partition's records read again from an earlier offset (a worker
killed after storing a batch but before committing it, a broker restart, a group reset) leave the
store, the topics and the outcome counts exactly as one delivery did.

The fault-injection suite found the case this pins down: an override replayed after the team's
timer had closed started a second timer, with its own warning and breach.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from domain.policy import load_policy
from sinks.base import InMemoryStore
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import ListPublisher

T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
POLICY = load_policy()
ROUTES = ("diversion_line", "co_responder", "emergency")
UNIT_TYPES = ("co_responder", "police", "ems")


def _received(call_id: str, minute: float, flags: dict[str, bool]) -> dict[str, Any]:
    return {"type": "call.received", "event_id": f"{call_id}-rcv", "call_id": call_id,
            "occurred_at": (T0 + timedelta(minutes=minute)).isoformat(), "center_id": "stl-911",
            "nature_code": "MENTAL", "concerns": ["mental_health"], "district": "district-1",
            "caller_phone": "+13145550100", "weapon_present": False, "medical_emergency": False,
            "violence_or_threat_to_others": False, "imminent_risk_to_self": False, "crime_in_progress": False,
            "caller_requests_police": False, "juvenile": False, "person_in_crisis_is_caller": True, **flags}


@st.composite
def call_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Two calls' events in time order: received, then any of overrides, dispatches, arrivals, a close,
    follow-up attempts and completions; a tick of another call at the end moves event time past every
    deadline (a day later: SLA warnings and breaches, follow-ups due and overdue)."""
    events: list[tuple[float, dict[str, Any]]] = []
    for call in ("a", "b"):
        flags = draw(st.fixed_dictionaries({"person_in_crisis_is_caller": st.booleans(),
                                            "imminent_risk_to_self": st.booleans()}))
        minute = draw(st.floats(0, 30))
        events.append((minute, _received(call, minute, flags)))
        closed = False
        for n in range(draw(st.integers(0, 6))):
            minute += draw(st.floats(0.5, 40))
            kind = draw(st.sampled_from(("override", "dispatch", "arrival", "close", "attempt", "complete")))
            at = (T0 + timedelta(minutes=minute)).isoformat()
            base = {"event_id": f"{call}-{n}", "call_id": call, "occurred_at": at}
            if kind == "override":
                event = {**base, "type": "triage.overridden", "route": draw(st.sampled_from(ROUTES)),
                         "overridden_by": "d1", "reason": "r", "approved_by": "s1", "approved_by_role": "supervisor"}
            elif kind in ("dispatch", "arrival"):
                event = {**base, "type": "unit.dispatched" if kind == "dispatch" else "unit.arrived",
                         "unit_id": "U1", "unit_type": draw(st.sampled_from(UNIT_TYPES))}
            elif kind == "close":
                if closed:
                    continue
                closed = True
                event = {**base, "type": "call.closed",
                         "disposition": draw(st.sampled_from(("stabilized_on_scene", "transported", "cancelled")))}
            elif kind == "attempt":
                event = {**base, "type": "followup.attempted", "attempted_by": "clinician-1",
                         "channel": "phone", "attempt_result": draw(st.sampled_from(("reached", "no_answer")))}
            else:
                event = {**base, "type": "followup.completed", "completed_by": "clinician-1",
                         "linkage": "outpatient_mental_health"}
            events.append((minute, event))
    events.sort(key=lambda pair: pair[0])
    tick = {"type": "unit.dispatched", "event_id": "tick", "call_id": "clock", "unit_id": "P1",
            "unit_type": "police", "occurred_at": (T0 + timedelta(days=20)).isoformat()}
    return [event for _, event in events] + [tick]


class Run:
    """One partition through the pipeline on the in-memory store, in batches."""

    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.publisher = ListPublisher()
        self.pipeline = CallPipeline(Settings(timer_clock="event", timer_lateness_seconds=0, pseudonym_key="k"),
                                     POLICY, self.store, self.publisher, PipelineMetrics(CollectorRegistry()),
                                     clock=lambda: T0 + timedelta(days=400))

    async def deliver(self, records: list[InboundRecord], cuts: list[int]) -> None:
        start = 0
        for cut in [*sorted(set(cuts)), len(records)]:
            if cut > start:
                await self.pipeline.handle(records[start:cut])
                start = cut

    def outcome(self) -> dict[str, Any]:
        s = self.store
        return {
            "decisions": sorted(s.decisions), "lifecycle": sorted(s.lifecycle),
            "timers": {key: (json.dumps(dict(row.state), sort_keys=True, default=str), row.next_deadline_at,
                             row.failed_reason) for key, row in s.timers.items()},
            "timer_events": sorted(s.timer_events), "dead_letters": sorted(s.dead_letters),
            "published": sorted({json.loads(m.value)["event_id"] for m in self.publisher.messages}),
            "outcome_daily": {key: n for key, n in s.outcome_daily.items() if n},
            "outcome_facts": {call_id: facts for call_id, facts in s.outcome_facts.items()},
        }


def _records(events: list[dict[str, Any]], first_offset: int = 0) -> list[InboundRecord]:
    return [InboundRecord(topics.CALLS, 0, first_offset + offset, event["call_id"].encode(),
                          json.dumps(event).encode()) for offset, event in enumerate(events)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_streams(), st.data())
async def test_reading_a_partition_again_from_an_earlier_offset_changes_nothing(events, data):
    records = _records(events)
    once = Run()
    await once.deliver(records, data.draw(st.lists(st.integers(1, len(records)), max_size=3), label="cuts"))

    twice = Run()
    # A crash after storing up to `stored`, with the last commit at `committed`: the records from
    # `committed` on are read again (same offsets), batched anyhow.
    stored = data.draw(st.integers(1, len(records)), label="stored")
    committed = data.draw(st.integers(0, stored - 1), label="committed")
    await twice.deliver(records[:stored], data.draw(st.lists(st.integers(1, stored), max_size=2), label="cuts1"))
    await twice.deliver(records[committed:], data.draw(st.lists(st.integers(1, len(records) - committed),
                                                               max_size=2), label="cuts2"))
    expected, got = once.outcome(), twice.outcome()
    for part in expected:
        assert got[part] == expected[part], part


async def test_an_override_read_again_after_the_teams_timer_closed_starts_no_second_timer():
    """The fault-injection suite's case: the override asked for the team already awaited; the call closed."""
    events = [_received("c", 0, {"person_in_crisis_is_caller": False}),
              {"type": "triage.overridden", "event_id": "c-ovr", "call_id": "c", "occurred_at": (T0 + timedelta(
                  seconds=26)).isoformat(), "route": "co_responder", "overridden_by": "d39", "reason": "r"},
              {"type": "unit.dispatched", "event_id": "c-1", "call_id": "c", "occurred_at": (T0 + timedelta(
                  minutes=1)).isoformat(), "unit_id": "CRU7", "unit_type": "co_responder"},
              {"type": "call.closed", "event_id": "c-2", "call_id": "c", "occurred_at": (T0 + timedelta(
                  minutes=17)).isoformat(), "disposition": "cancelled"}]
    run = Run()
    await run.deliver(_records(events), [])
    first = [m.value for m in run.publisher.on(topics.SLA)]  # the warning, due before the close
    await run.deliver(_records(events[1:], first_offset=1), [])  # from the override on, after a broker restart
    await run.deliver(_records([{"type": "unit.dispatched", "event_id": "tick", "call_id": "clock", "unit_id": "P1",
                                 "unit_type": "police", "occurred_at": (T0 + timedelta(days=1)).isoformat()}],
                               first_offset=4), [])
    assert [key for key in run.store.timers if key[0] == "sla_arrival"] == [("sla_arrival", "c", 0)]
    assert [m.value for m in run.publisher.on(topics.SLA)] == first
