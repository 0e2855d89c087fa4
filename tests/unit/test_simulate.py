"""The synthetic city: deterministic, time-ordered, and shaped like the published figures."""

from __future__ import annotations

import json
from collections import Counter

from crisis.simulate import City, CitySettings, malformed_events
from domain.policy import load_policy
from schemas.calls import decode_call_event

POLICY = load_policy()


def test_same_seed_same_stream_and_every_event_is_valid():
    first = City(POLICY, seed=5).events(300)
    second = City(POLICY, seed=5).events(300)
    assert [e.value for e in first] == [e.value for e in second]
    assert [e.occurred_at for e in first] == sorted(e.occurred_at for e in first)
    for event in first:
        decoded = decode_call_event(event.value)
        assert decoded.call_id == event.key and decoded.type == event.type


def test_the_mix_has_every_route_late_teams_and_closures():
    events = City(POLICY, seed=8, settings=CitySettings(late_team_share=0.2)).events(2000)
    types = Counter(e.type for e in events)
    assert types["call.received"] == 2000 and types["call.closed"] == 2000
    bodies = [json.loads(e.value) for e in events if e.type == "call.received"]
    behavioral = sum(1 for b in bodies if b["concerns"]) / len(bodies)
    assert 0.8 < behavioral < 0.9  # about 85% of flagged calls carry a behavioral-health concern
    assert len({b["district"] for b in bodies}) == 6
    arrivals = [json.loads(e.value) for e in events if e.type == "unit.arrived"]
    assert {a["unit_type"] for a in arrivals} == {"co_responder", "police"}


def test_malformed_records_cover_the_failure_kinds():
    values = [e.value for e in malformed_events(7)]
    assert b"{not json" in values and b"" in values
    assert any(b"call.teleported" in v for v in values)


def test_live_at_a_rate_compresses_the_day_and_stamps_the_wall_clock():
    """`crisis simulate --live --rate R` once paced publishing but kept simulated times, hours ahead of the clock."""
    from datetime import UTC, datetime

    from crisis.cli import live_speedup
    from crisis.publish import retime

    events = City(POLICY, seed=5).events(300)
    speedup = live_speedup(events, 50.0)
    start = datetime.now(UTC)
    live = retime(events, start, speedup)
    span = (live[-1].occurred_at - live[0].occurred_at).total_seconds()
    assert abs(len(live) / span - 50.0) < 1.0, "the average rate is the one asked for"
    assert live[0].occurred_at == start and json.loads(live[0].value)["occurred_at"] == start.isoformat()
    assert live_speedup(events, None) == 1.0
