"""The README's HTTP example (curl) runs as written against a live ingest service, and what it sends is stored."""

from __future__ import annotations

import asyncio
import json
import os

import asyncpg
import pytest

from crisis.services import REPO_ROOT
from tests.integration.ingest_service import running_ingest
from tests.integration.test_ingest import read_everything
from tests.readme_examples import readme_example

pytestmark = pytest.mark.integration


async def test_the_http_example_runs_as_written(pipeline_env):
    env = pipeline_env
    async with running_ingest(env.settings, ("stl-911",)) as ingest:
        process = await asyncio.create_subprocess_exec(
            "bash", "-euo", "pipefail", "-c", readme_example("http"), cwd=REPO_ROOT,
            env={**os.environ, "INGEST": ingest.url, "TOKEN": ingest.tokens["stl-911"]},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    answers = [json.loads(line) for line in stdout.decode().replace("}{", "}\n{").splitlines() if line.strip()]
    assert answers == [
        {"accepted": 1, "event_ids": ["stl-911:26-4711:received"]},
        {"accepted": 2, "event_ids": ["stl-911:26-4711:dispatched:CRT2", "stl-911:26-4711:arrived:CRT2"]},
        {"accepted": 3, "event_ids": ["stl-911:26-1001:received", "stl-911:26-1001:dispatched:P17",
                                      "stl-911:26-1001:arrived:CRT2"]},
    ]

    worker = env.worker()
    await read_everything(worker, 6)
    conn = await asyncpg.connect(env.settings.database_url)
    try:
        reasons = await conn.fetchval("SELECT reasons FROM triage_decisions WHERE call_id = 'stl-911:26-4711'")
        lifecycle = await conn.fetchval("SELECT count(*) FROM call_events")
    finally:
        await conn.close()
    assert "nature_code:25B6V -> violence_or_threat_to_others" in reasons
    assert lifecycle == 4
