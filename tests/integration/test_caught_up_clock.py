"""A clock that knows how far it has read: after an outage, a deadline never fires by the wall clock
while the arrival that meets it is still unread in the backlog.

The worker is stopped while on-time arrivals keep coming and every deadline passes, then restarted:
no breach for a team that arrived in time, and late teams still get their warning and breach. Times
are scaled down (seconds instead of minutes); the mechanism is the production one (wall clock mode).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from sinks.queries import stored_call_ids, timer_events_of
from streams import topics
from tests.conftest import wait_until
from tests.integration.kafka_io import as_records, publish
from tests.integration.test_sla_timers import short_policy

pytestmark = pytest.mark.integration
WARNING_S, BREACH_S, ON_TIME_S, LATE_S, RESTART_S = 8, 12, 4, 15, 18
FILLER_EVENTS = 12_000  # a few seconds of backlog for the restarted worker (1,500-2,000 events/s here)


async def test_no_false_breach_after_an_outage_while_late_teams_still_breach(pipeline_env, call_received_factory,
                                                                             tmp_path):
    env, bootstrap, db = pipeline_env, pipeline_env.settings.kafka_bootstrap, pipeline_env.settings.database_url
    policy = short_policy(tmp_path, first=(WARNING_S, BREACH_S), second=(WARNING_S, BREACH_S))
    overrides = {"CRISIS_POLICY": str(policy), "CRISIS_TIMER_LATENESS_SECONDS": "0.5"}
    worker = env.worker(**overrides)
    warm_up = call_received_factory(call_id="warm-up")
    await publish(bootstrap, env.topic(topics.CALLS), as_records([warm_up]))
    await wait_until(lambda: _stored(db, ["warm-up"]), 60)

    t0 = datetime.now(UTC)
    on_time = [f"on-time-{n}" for n in range(20)]
    late = [f"late-{n}" for n in range(20)]
    calls = [call_received_factory(call_id=c, event_id=f"{c}-r", occurred_at=t0.isoformat(),
                                   person_in_crisis_is_caller=False) for c in on_time + late]
    await publish(bootstrap, env.topic(topics.CALLS), as_records(calls))
    await wait_until(lambda: _stored(db, on_time + late), 30)
    worker.kill()  # the outage: nothing reads while the teams arrive and the deadlines pass

    def arrival(call_id: str, seconds: float) -> dict:
        return {"type": "unit.arrived", "event_id": f"{call_id}-arr", "call_id": call_id,
                "occurred_at": (t0 + timedelta(seconds=seconds)).isoformat(), "unit_id": "CRU1",
                "unit_type": "co_responder"}

    # A backlog: the rest of the city's events, read before the arrivals on every partition, takes the
    # restarted worker seconds to get through, while the wall clock is long past every deadline.
    filler = [{"type": "unit.dispatched", "event_id": f"filler-{n}", "call_id": f"filler-{n}",
               "occurred_at": (t0 + timedelta(seconds=ON_TIME_S - 1)).isoformat(), "unit_id": "P1",
               "unit_type": "police"} for n in range(FILLER_EVENTS)]
    await publish(bootstrap, env.topic(topics.CALLS), as_records(filler))
    await _until(t0 + timedelta(seconds=ON_TIME_S))
    await publish(bootstrap, env.topic(topics.CALLS), as_records([arrival(c, ON_TIME_S) for c in on_time]))
    await _until(t0 + timedelta(seconds=LATE_S))
    await publish(bootstrap, env.topic(topics.CALLS), as_records([arrival(c, LATE_S) for c in late]))
    await _until(t0 + timedelta(seconds=RESTART_S))
    assert await timer_events_of(db, on_time + late) == [], "nothing fired while the worker was down"

    env.worker(**overrides)  # restarted after every deadline passed, with the arrivals in its backlog
    expected = sorted([(c, "sla.met") for c in on_time]
                      + [(c, kind) for c in late for kind in ("sla.breached", "sla.late_arrival", "sla.warning")])

    async def settled() -> list[tuple[str, str]] | None:
        events = await timer_events_of(db, on_time + late)
        return events if len(events) >= len(expected) else None

    await wait_until(settled, 90)
    await asyncio.sleep(3)  # a false breach would come with the next ticks
    assert await timer_events_of(db, on_time + late) == expected


async def _stored(db: str, call_ids: list[str]) -> bool:
    return await stored_call_ids(db, call_ids) == set(call_ids)


async def _until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))

