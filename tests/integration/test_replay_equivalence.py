"""A recorded simulated week with follow-ups, played live on the wall clock (compressed) and replayed at
full speed by event time, gives the same timer events: every SLA step and every follow-up step.

The week is compressed 25,200 times (a day in 3.4 s) and the policy's durations with it, so the live
run keeps their meaning; the mechanism is the production one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crisis.publish import publish_events, retime
from crisis.simulate import City, CitySettings
from domain.policy import DEFAULT_POLICY_PATH, load_policy
from sinks.queries import stored_events, timer_event_counts, timer_event_ids_until
from streams import topics
from tests.conftest import wait_until
from tests.integration.kafka_io import read_all

pytestmark = pytest.mark.integration
SPEEDUP = 25_200.0


def compressed_policy(tmp_path: Path, speedup: float) -> Path:
    """The default policy with every duration (SLA seconds, follow-up hours and days) divided by ``speedup``."""
    text = DEFAULT_POLICY_PATH.read_text()

    def scale(match: re.Match[str]) -> str:
        values = [float(v) / speedup for v in re.findall(r"[\d.]+", match.group(2))]
        rendered = ", ".join(f"{v:.9f}" for v in values)
        return f"{match.group(1)}{'[' + rendered + ']' if '[' in match.group(2) else rendered}"

    text = re.sub(r"^((?:warning|breach)_after_seconds = )(.+)$", scale, text, flags=re.MULTILINE)
    text = re.sub(r"^((?:attempt_due_after_hours|overdue_grace_hours|expire_after_days) = )(.+)$", scale, text,
                  flags=re.MULTILINE)
    path = tmp_path / "compressed.toml"
    path.write_text(text)
    load_policy(path)  # still valid
    return path


async def test_a_replayed_week_gives_the_same_follow_ups_as_the_live_run(pipeline_env, pipeline_env_factory,
                                                                         tmp_path):
    policy = compressed_policy(tmp_path, SPEEDUP)
    city = City(load_policy(), seed=21, settings=CitySettings(calls_per_hour=10, late_team_share=0.25))
    everything = city.events(2000)
    week_end = everything[0].occurred_at + timedelta(days=7)
    recorded = [event for event in everything if event.occurred_at < week_end]
    stream = retime(recorded, datetime.now(UTC) + timedelta(seconds=8), SPEEDUP)
    worker_env = {"CRISIS_POLICY": str(policy), "CRISIS_TIMER_LATENESS_SECONDS": "1"}

    live = pipeline_env  # the wall clock; each event sent when its compressed time comes
    live.worker(**worker_env)
    await publish_events(live.settings.kafka_bootstrap, live.topic(topics.CALLS), stream, at_event_time=True)

    replay = await pipeline_env_factory()  # the same stream at full speed, event time only
    replay.worker(**worker_env, CRISIS_TIMER_CLOCK="event")
    await publish_events(replay.settings.kafka_bootstrap, replay.topic(topics.CALLS), stream)

    for env in (live, replay):
        await wait_until(lambda env=env: _all_stored(env.settings.database_url, city.call_prefix, len(stream)), 90)
    # Compare what both could know. Replayed, a partition's deadlines fire as its own events move its event
    # time; live, the wall clock moves every partition. So: up to the partition whose last event is
    # earliest, less the allowed lateness.
    last_by_partition: dict[int, datetime] = {}
    for record in await read_all(replay.settings.kafka_bootstrap, replay.topic(topics.CALLS)):
        at = datetime.fromisoformat(json.loads(record.value)["occurred_at"])
        last_by_partition[record.partition] = max(at, last_by_partition.get(record.partition, at))
    horizon = min(last_by_partition.values()) - timedelta(seconds=1)
    live_ids = await timer_event_ids_until(live.settings.database_url, horizon)
    replay_ids = await timer_event_ids_until(replay.settings.database_url, horizon)
    kinds = await timer_event_counts(live.settings.database_url)
    assert min(kinds.get(kind, 0) for kind in ("followup.due", "followup.overdue", "followup.completed",
                                                "followup.dropped_out", "sla.met", "sla.breached")) > 3, kinds
    difference = Counter(("live only" if i in live_ids else "replay only") for i in live_ids ^ replay_ids)
    assert live_ids == replay_ids, difference


async def _all_stored(db: str, call_prefix: str, events: int) -> bool:
    return await stored_events(db, call_prefix) >= events
