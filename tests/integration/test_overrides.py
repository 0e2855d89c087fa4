"""Issue 3: a dispatcher override end to end on Apache Kafka and PostgreSQL, counted in the worker's metrics."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import asyncpg
import pytest

from streams import topics
from tests.conftest import wait_until
from tests.integration.kafka_io import as_records, publish, read_all

pytestmark = pytest.mark.integration


async def test_override_replaces_route_keeps_both_and_is_counted(pipeline_env, call_received_factory):
    env, bootstrap, db = pipeline_env, pipeline_env.settings.kafka_bootstrap, pipeline_env.settings.database_url
    worker = env.worker()
    call = call_received_factory(call_id="ov-1", event_id="ov-1-received")
    override = {"type": "triage.overridden", "event_id": "ov-1-override", "call_id": "ov-1",
                "occurred_at": "2026-11-02T15:03:00+00:00", "route": "co_responder",
                "overridden_by": "dispatcher-42", "reason": "caller is not safe to stay on the phone"}
    await publish(bootstrap, env.topic(topics.CALLS), as_records([call, override]))

    async def both_stored():
        conn = await asyncpg.connect(db)
        try:
            return await conn.fetch("SELECT type, route, previous_route, overridden_by, override_reason, reasons"
                                    " FROM triage_decisions WHERE call_id = 'ov-1' ORDER BY decided_at")
        finally:
            await conn.close()

    rows = await wait_until(lambda: _two(both_stored), 60)
    assert [(r["type"], r["route"]) for r in rows] == [
        ("triage.decided", "diversion_line"), ("triage.overridden", "co_responder")]
    assert rows[1]["previous_route"] == "diversion_line"
    assert rows[1]["overridden_by"] == "dispatcher-42"
    assert rows[1]["override_reason"] == "caller is not safe to stay on the phone"

    conn = await asyncpg.connect(db)
    current = await conn.fetchval("SELECT route FROM partner_current_triage WHERE call_id = 'ov-1'")
    timer = await conn.fetchval("SELECT response FROM sla_timers WHERE call_id = 'ov-1'")
    await conn.close()
    assert current == "co_responder"
    assert timer == "first", "an override to the co-responder team starts its arrival timer"

    published = [json.loads(r.value) for r in await read_all(bootstrap, env.topic(topics.TRIAGE))]
    assert [e["type"] for e in published] == ["triage.decided", "triage.overridden"]
    assert "override_reason" not in published[1]

    port = worker.env["CRISIS_METRICS_PORT"]
    url = f"http://127.0.0.1:{port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'crisis_triage_overrides_total{from_route="diversion_line",to_route="co_responder"} 1.0' in body
    assert 'crisis_triage_decisions_total{route="diversion_line"} 1.0' in body
    assert "crisis_decision_latency_seconds_bucket" in body


async def _two(fetch):
    rows = await fetch()
    return rows if len(rows) >= 2 else None
