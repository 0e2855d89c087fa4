"""The HTTP/EIDO front door and the CAD import on the real broker, with a real worker storing what they send."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from typer.testing import CliRunner

from crisis.cli import app
from crisis.services import REPO_ROOT, TansuBroker, WorkerProcess, free_port, temporary_env
from streams import topics
from streams.config import Settings
from tests.conftest import wait_until
from tests.integration.ingest_service import running_ingest
from tests.integration.kafka_io import read_all

pytestmark = pytest.mark.integration

EIDO = REPO_ROOT / "tests" / "fixtures" / "eido"
CAD = REPO_ROOT / "tests" / "fixtures" / "cad"
MAPPINGS = REPO_ROOT / "deploy" / "cad-mappings"


async def fetch(db: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def counts(db: str) -> dict[str, int]:
    row = (await fetch(db, "SELECT (SELECT count(*) FROM calls) AS calls,"
                           " (SELECT count(*) FROM triage_decisions) AS decisions,"
                           " (SELECT count(*) FROM call_events) AS lifecycle,"
                           " (SELECT count(*) FROM dead_letters) AS dead_letters"))[0]
    return dict(row)


async def consumed(worker: WorkerProcess) -> float:
    """Events the worker has read (crisis_events_consumed_total), from its metrics endpoint."""
    url = f"http://127.0.0.1:{worker.env['CRISIS_METRICS_PORT']}/metrics"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
    except aiohttp.ClientError:
        return 0.0
    return sum(float(v) for v in re.findall(r"^crisis_events_consumed_total\{[^}]*\} (\S+)$", text, re.MULTILINE))


async def read_everything(worker: WorkerProcess, records: int) -> None:
    """Wait until the worker has read ``records`` events (duplicates included), so counts are final."""
    await wait_until(lambda: _at_least(worker, records), 90)


async def _at_least(worker: WorkerProcess, records: int) -> bool:
    return await consumed(worker) >= records


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


async def test_http_batches_and_eido_snapshots_are_stored_once_each(pipeline_env, call_received_factory):
    env = pipeline_env
    calls = [call_received_factory(event_id=f"stl-911:h{n}:received", call_id=f"stl-911:h{n}")
             for n in range(50)]
    snapshots = [json.loads((EIDO / name).read_text(encoding="utf-8"))
                 for name in ("incident_dispatched.json", "incident_closed.json", "incident_dispatched.json")]
    async with running_ingest(env.settings, ("stl-911",)) as ingest:
        for _ in range(2):  # the same batch twice: a CAD retrying after a lost response
            status, _, body = await ingest.post("/v1/events", ndjson(calls), "stl-911", "application/x-ndjson")
            assert status == 202 and body["accepted"] == 50
        accepted = 0
        for snapshot in snapshots:
            status, _, body = await ingest.post("/v1/eido", snapshot, "stl-911")
            assert status == 202, body
            accepted += body["accepted"]
    assert accepted == 3 + 3 + 3

    worker = env.worker()
    await read_everything(worker, 100 + accepted)
    db = env.settings.database_url
    # 51 calls; the EIDO incident's steps once each: dispatched P17, arrived CRT2, arrived P17, closed.
    assert await counts(db) == {"calls": 51, "decisions": 51, "lifecycle": 4, "dead_letters": 0}, worker.log_tail()
    (eido_call,) = await fetch(db, "SELECT d.route, d.reasons, c.caller_phone FROM triage_decisions d "
                                   "JOIN calls c USING (call_id) WHERE call_id = 'stl-911:26-1001'")
    assert eido_call["route"] == "emergency"
    assert "incident_type_common:MTLV -> violence_or_threat_to_others" in eido_call["reasons"]
    assert eido_call["caller_phone"] == "+13145550142"  # internal table only
    partner = [json.loads(r.value) for r in await read_all(env.settings.kafka_bootstrap, env.topic(topics.TRIAGE))]
    assert len({d["event_id"] for d in partner}) == 51  # at least once on the topic; consumers dedup by id
    assert not any("5550142" in json.dumps(d) for d in partner)
    closed = await fetch(db, "SELECT disposition FROM call_events WHERE type = 'call.closed'")
    assert [row["disposition"] for row in closed] == ["linked_to_services"]


async def test_a_cad_export_imported_twice_is_stored_once(pipeline_env):
    env = pipeline_env
    runner = CliRunner()
    args = ["import-cad", str(CAD / "unit_rows_shape.csv"), "--mapping", str(MAPPINGS / "unit-rows-example.toml"),
            "--publish"]

    def import_once() -> dict[str, Any]:
        with temporary_env(**env.settings.as_env()):
            result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        summary: dict[str, Any] = json.loads(result.stdout)
        return summary

    first = await asyncio.to_thread(import_once)
    second = await asyncio.to_thread(import_once)
    assert first == second
    assert first["published"] == 24 and first["topic"] == env.topic(topics.CALLS)

    worker = env.worker()
    await read_everything(worker, 48)
    assert await counts(env.settings.database_url) == {"calls": 6, "decisions": 6, "lifecycle": 18,
                                                       "dead_letters": 0}, worker.log_tail()
    # Every imported call wants the co-responder team (first or second response); three teams arrived.
    timers = await fetch(env.settings.database_url, "SELECT call_id, arrived_at IS NOT NULL AS arrived FROM sla_timers")
    assert {row["call_id"]: row["arrived"] for row in timers} == {
        "example-911:26-0501": True, "example-911:26-0502": True, "example-911:26-0503": True,
        "example-911:26-0504": False, "example-911:26-0505": False, "example-911:26-0506": False}


async def test_while_kafka_is_unreachable_503_and_readyz_false_then_it_recovers(tmp_path: Path,
                                                                                call_received_factory):
    """tansu stands in for a broker that comes and goes (it does not do idempotent producers, so they are off)."""
    port = free_port()
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix="outage.", partitions=2,
                        kafka_idempotent_producer=False)
    event = call_received_factory(event_id="stl-911:o1:received", call_id="stl-911:o1")
    async with running_ingest(settings, ("stl-911",), publish_timeout_seconds=2,
                              wait_ready=False) as ingest:
        assert not await ingest.ready()
        status, headers, body = await ingest.post("/v1/events", event, "stl-911")
        assert (status, headers["Retry-After"], body["error"]) == (503, "2", "unavailable")

        with TansuBroker(port) as broker:
            await wait_until(ingest.ready, 60)
            status, _, body = await ingest.post("/v1/events", event, "stl-911")
            assert (status, body["event_ids"]) == (202, ["stl-911:o1:received"])
            stored = await read_all(broker.bootstrap, settings.topic(topics.CALLS))
            assert [json.loads(r.value)["event_id"] for r in stored] == ["stl-911:o1:received"]

        status, headers, _ = await ingest.post("/v1/events", event, "stl-911")
        assert status == 503 and headers["Retry-After"] == "2"
        await wait_until(lambda: _not_ready(ingest), 30)


async def _not_ready(ingest: Any) -> bool:
    return not await ingest.ready()
