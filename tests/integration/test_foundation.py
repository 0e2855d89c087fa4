"""Issue 2's end-to-end acceptance on real Apache Kafka and PostgreSQL, with real worker processes."""

from __future__ import annotations

import json
import random

import asyncpg
import pytest

from crisis.simulate import malformed_events
from streams import topics
from tests.conftest import wait_until
from tests.integration.kafka_io import as_records, publish, read_all

pytestmark = pytest.mark.integration

FLAGS = ("weapon_present", "violence_or_threat_to_others", "medical_emergency", "imminent_risk_to_self",
         "crime_in_progress", "caller_requests_police", "person_in_crisis_is_caller", "juvenile")


def thousand_calls(factory, prefix: str, count: int = 1000) -> list[dict]:
    rng = random.Random(prefix)
    calls = []
    for n in range(count):
        flags = {flag: rng.random() < 0.15 for flag in FLAGS}
        flags["person_in_crisis_is_caller"] = rng.random() < 0.6
        calls.append(factory(event_id=f"{prefix}-e{n}", call_id=f"{prefix}-c{n}",
                             concerns=rng.choice([["mental_health"], ["substance_use"], [], ["welfare_check"]]),
                             **flags))
    return calls


async def counts(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        return {
            "calls": await conn.fetchval("SELECT count(*) FROM calls"),
            "decisions": await conn.fetchval("SELECT count(*) FROM triage_decisions"),
            "dead_letters": await conn.fetchval("SELECT count(*) FROM dead_letters"),
        }
    finally:
        await conn.close()


async def test_thousand_calls_ten_malformed_replayed_and_restarted(pipeline_env, call_received_factory):
    env, bootstrap = pipeline_env, pipeline_env.settings.kafka_bootstrap
    db = env.settings.database_url
    calls = thousand_calls(call_received_factory, "a")
    malformed = [(e.key, e.value) for e in malformed_events(10)]
    await publish(bootstrap, env.topic(topics.CALLS), as_records(calls) + malformed)

    worker = env.worker()
    await wait_until(lambda: _reached(db, calls=1000, decisions=1000, dead_letters=10), 90)
    assert await counts(db) == {"calls": 1000, "decisions": 1000, "dead_letters": 10}, worker.log_tail()

    # Every dead letter says why, and carries the original bytes.
    conn = await asyncpg.connect(db)
    letters = await conn.fetch("SELECT reason, error, original_value FROM dead_letters")
    await conn.close()
    assert all(row["reason"] and row["error"] for row in letters)
    assert sorted(bytes(row["original_value"]) for row in letters) == sorted(value for _, value in malformed)
    published_letters = await read_all(bootstrap, env.topic(topics.DEADLETTER))
    assert len(published_letters) == 10
    assert {json.loads(r.value)["reason"] for r in published_letters} >= {"invalid_json", "unknown_type"}

    # Partner topic: one decision per call, no personal data.
    decisions = await read_all(bootstrap, env.topic(topics.TRIAGE))
    assert len({json.loads(r.value)["event_id"] for r in decisions}) == 1000
    assert all(b"caller_phone" not in r.value and b"5550100" not in r.value for r in decisions)
    assert all(r.key == json.loads(r.value)["call_id"].encode() for r in decisions)
    inputs = {r.key: r.partition for r in await read_all(bootstrap, env.topic(topics.CALLS)) if r.key}
    assert all(r.partition == inputs[r.key] for r in decisions), "a call's outputs share its input partition"

    # The same 1,000 again, then a sentinel: once the sentinel is stored, the replay was read too.
    sentinel = call_received_factory(event_id="sentinel-e", call_id="sentinel-c")
    await publish(bootstrap, env.topic(topics.CALLS), as_records([*calls, sentinel]))
    await wait_until(lambda: _reached(db, calls=1001, decisions=1001, dead_letters=10), 60)
    assert await counts(db) == {"calls": 1001, "decisions": 1001, "dead_letters": 10}

    # Kill the worker half-way through 3,000 new calls, start another: nothing lost, nothing twice.
    more = thousand_calls(call_received_factory, "b", 3000)
    await publish(bootstrap, env.topic(topics.CALLS), as_records(more))
    await wait_until(lambda: _reached(db, calls=1100, decisions=1100, dead_letters=10), 60)
    worker.kill()
    assert (await counts(db))["calls"] < 4001, "the worker finished before it could be killed half-way"
    env.worker()
    await wait_until(lambda: _reached(db, calls=4001, decisions=4001, dead_letters=10), 90)
    assert await counts(db) == {"calls": 4001, "decisions": 4001, "dead_letters": 10}


async def _reached(db: str, **expected: int) -> bool:
    current = await counts(db)
    return all(current[key] >= value for key, value in expected.items())
