"""SLA timers on real Apache Kafka and PostgreSQL: late and on-time teams, and SIGKILL with 1,000 pending
SLA timers and 1,000 pending follow-ups on the one timer table (the replayed week matching the live run
is in test_replay_equivalence.py).

Deadlines are shortened by a test policy (seconds instead of minutes) so the suite stays fast;
the mechanism is the same one production runs.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from domain.policy import DEFAULT_POLICY_PATH
from streams import topics
from tests.conftest import wait_until
from tests.integration.kafka_io import as_records, publish, read_all

pytestmark = pytest.mark.integration


def short_policy(tmp_path: Path, first: tuple[float, float], second: tuple[float, float]) -> Path:
    """The default policy with SLA deadlines in seconds: (warning, breach) per response."""
    text = DEFAULT_POLICY_PATH.read_text()
    text = text.replace("warning_after_seconds = 900", f"warning_after_seconds = {first[0]:g}")
    text = text.replace("breach_after_seconds = 1200", f"breach_after_seconds = {first[1]:g}")
    text = text.replace("warning_after_seconds = 600", f"warning_after_seconds = {second[0]:g}")
    text = text.replace("breach_after_seconds = 900", f"breach_after_seconds = {second[1]:g}")
    path = tmp_path / "short-sla.toml"
    path.write_text(text)
    return path


async def sla_rows(db: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db)
    try:
        return await conn.fetch(
            "SELECT call_id, type, response, arrival_seconds FROM sla_events ORDER BY call_id, type")
    finally:
        await conn.close()


async def fetchval(db: str, sql: str) -> int:
    conn = await asyncpg.connect(db)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_late_team_warns_and_breaches_on_time_team_meets(pipeline_env, call_received_factory, tmp_path):
    env, bootstrap = pipeline_env, pipeline_env.settings.kafka_bootstrap
    policy = short_policy(tmp_path, first=(3, 5), second=(2, 4))
    worker = env.worker(CRISIS_POLICY=str(policy), CRISIS_TIMER_LATENESS_SECONDS="0.5")
    now = datetime.now(UTC)
    on_time = call_received_factory(call_id="on-time", occurred_at=now.isoformat(), person_in_crisis_is_caller=False)
    late = call_received_factory(call_id="late", occurred_at=now.isoformat(), person_in_crisis_is_caller=False)
    await publish(bootstrap, env.topic(topics.CALLS), as_records([on_time, late]))
    arrived = {"type": "unit.arrived", "event_id": "arr-1", "call_id": "on-time",
               "occurred_at": (now + timedelta(seconds=1)).isoformat(), "unit_id": "CRU1", "unit_type": "co_responder"}
    await asyncio.sleep(max(0.0, (now + timedelta(seconds=1) - datetime.now(UTC)).total_seconds()))
    await publish(bootstrap, env.topic(topics.CALLS), as_records([arrived]))

    rows = await wait_until(lambda: _rows_with(env.settings.database_url, 3), 60)
    assert [(r["call_id"], r["type"]) for r in rows] == [
        ("late", "sla.breached"), ("late", "sla.warning"), ("on-time", "sla.met")], worker.log_tail()
    assert rows[2]["arrival_seconds"] == pytest.approx(1.0)
    published = [json.loads(r.value) for r in await read_all(bootstrap, env.topic(topics.SLA))]
    assert sorted((e["call_id"], e["type"]) for e in published) == [
        ("late", "sla.breached"), ("late", "sla.warning"), ("on-time", "sla.met")]
    assert all("caller_phone" not in e for e in published)


async def _rows_with(db: str, count: int) -> list[asyncpg.Record] | None:
    rows = await sla_rows(db)
    return rows if len(rows) >= count else None


async def _at_least(db: str, sql: str, n: int) -> bool:
    return await fetchval(db, sql) >= n


def short_followup_policy(tmp_path: Path, sla: tuple[float, float], hours: tuple[float, float, float],
                          grace_hours: float, expire_days: float) -> Path:
    """The short SLA policy with follow-up times shortened too (attempts due, grace, expiry)."""
    path = short_policy(tmp_path, first=sla, second=sla)
    text = path.read_text()
    text = text.replace("attempt_due_after_hours = [24, 72, 168]", f"attempt_due_after_hours = {list(hours)}")
    text = text.replace("overdue_grace_hours = 4", f"overdue_grace_hours = {grace_hours}")
    text = text.replace("expire_after_days = 30", f"expire_after_days = {expire_days}")
    path.write_text(text)
    return path


async def test_sigkill_with_1000_follow_ups_and_1000_sla_timers_fires_each_due_event_once(
    pipeline_env, call_received_factory, tmp_path
):
    """Both kinds on the one timer table: every deadline passes while the worker is down, then two workers
    restart together (rebalancing while they fire). Each due event exactly once, in Postgres and on the topics."""
    env, bootstrap, db = pipeline_env, pipeline_env.settings.kafka_bootstrap, pipeline_env.settings.database_url
    # Follow-up attempt 1 due 7.2 s after the close, overdue 3.6 s later, expired after 25.9 s.
    policy = short_followup_policy(tmp_path, sla=(8, 12), hours=(0.002, 0.004, 0.006), grace_hours=0.001,
                                   expire_days=0.0003)
    overrides = {"CRISIS_POLICY": str(policy), "CRISIS_TIMER_LATENESS_SECONDS": "0.5"}
    worker = env.worker(**overrides)
    now = datetime.now(UTC)
    teams = [call_received_factory(call_id=f"t{n}", event_id=f"t{n}-0", occurred_at=now.isoformat(),
                                   person_in_crisis_is_caller=False) for n in range(1000)]
    phones = [call_received_factory(call_id=f"f{n}", event_id=f"f{n}-0", occurred_at=now.isoformat())
              for n in range(1000)]
    closes = [{"type": "call.closed", "event_id": f"f{n}-1", "call_id": f"f{n}", "occurred_at": now.isoformat(),
               "disposition": "resolved_by_phone"} for n in range(1000)]
    await publish(bootstrap, env.topic(topics.CALLS), as_records(teams + phones + closes))
    running = "SELECT count(*) FROM timers WHERE next_deadline_at IS NOT NULL"
    await wait_until(lambda: _at_least(db, running, 2000), 60)
    await wait_until(lambda: _at_least(db, "SELECT count(*) FROM followup_events WHERE type = 'followup.due'",
                                       1000), 30)
    worker.kill()
    assert await fetchval(db, "SELECT count(*) FROM timer_events WHERE type <> 'followup.due'") == 0

    await asyncio.sleep(max(0.0, (now + timedelta(seconds=28) - datetime.now(UTC)).total_seconds()))
    env.worker(**overrides)
    env.worker(**overrides)
    expired = "SELECT count(*) FROM timer_events WHERE type = 'followup.expired'"
    breached = "SELECT count(*) FROM timer_events WHERE type = 'sla.breached'"
    await wait_until(lambda: _at_least(db, expired, 1000), 90)
    await wait_until(lambda: _at_least(db, breached, 1000), 30)
    await asyncio.sleep(3)  # let any duplicate that would come, come
    conn = await asyncpg.connect(db)
    try:
        counts = dict(await conn.fetch("SELECT type, count(*) FROM timer_events GROUP BY type"))
    finally:
        await conn.close()
    assert counts == {"sla.warning": 1000, "sla.breached": 1000, "followup.due": 1000, "followup.overdue": 1000,
                      "followup.expired": 1000}
    assert await fetchval(db, running) == 0
    for topic, expected in ((topics.SLA, 2000), (topics.FOLLOWUPS, 3000)):
        ids = Counter(json.loads(r.value)["event_id"] for r in await read_all(bootstrap, env.topic(topic)))
        assert len(ids) == expected, (topic, len(ids))
        assert max(ids.values()) == 1, f"a consumer of {topic} would have seen a duplicate event id"
