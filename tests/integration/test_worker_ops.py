"""The worker's operations side on a real worker: /healthz, /readyz, consumer lag, and JSON logs."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from sinks.queries import stored_call_ids
from streams import topics
from tests.conftest import wait_until
from tests.integration.kafka_io import as_records, publish

pytestmark = pytest.mark.integration


def get(port: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


async def test_health_readiness_lag_and_json_logs(pipeline_env, call_received_factory):
    env = pipeline_env
    worker = env.worker()
    port = worker.env["CRISIS_METRICS_PORT"]

    async def ready() -> dict | None:
        status, body = await asyncio.to_thread(get, port, "/readyz")
        return json.loads(body) if status == 200 else None

    answer = await wait_until(ready, 60)
    assert answer == {"ready": True, "checks": {"postgres": "ok", "kafka": "ok", "calls_agent": "ok"}}
    assert await asyncio.to_thread(get, port, "/healthz") == (200, '{"status": "ok"}')

    await publish(env.settings.kafka_bootstrap, env.topic(topics.CALLS),
                  as_records([call_received_factory(call_id="ops-1", event_id="ops-1-r")]))
    await wait_until(lambda: _stored(env.settings.database_url), 60)

    async def lag_reported() -> str | None:
        _, body = await asyncio.to_thread(get, port, "/metrics")
        lines = [line for line in body.splitlines() if line.startswith("crisis_consumer_lag_events{")]
        return body if len(lines) == env.settings.partitions else None

    metrics = await wait_until(lag_reported, 30)
    assert 'crisis_consumer_lag_events{partition="0"} 0.0' in metrics

    worker.stop()
    lines = [line for line in worker.log_path.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # one JSON object a line, every line
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in parsed)
    assert any(entry["logger"] == "agents.worker" for entry in parsed)
    assert "5550100" not in worker.log_path.read_text()


async def _stored(db: str) -> bool:
    return await stored_call_ids(db, ["ops-1"]) == {"ops-1"}
