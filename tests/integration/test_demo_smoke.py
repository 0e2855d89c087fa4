"""The README's demo path, end to end on the embedded broker (tansu) and embedded PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from crisis.services import REPO_ROOT

pytestmark = pytest.mark.integration


def test_demo_json_summary_on_tansu():
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "crisis.cli", "demo", "--calls", "300", "--malformed", "7", "--json"],
        capture_output=True, text=True, timeout=240, cwd=REPO_ROOT, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["calls_sent"] == 300
    assert summary["decisions_stored"] == 300
    assert summary["calls_stored"] == 300
    assert summary["dead_lettered"] == 7
    assert sum(summary["by_route"].values()) == 300
    assert set(summary["by_route"]) == {"diversion_line", "co_responder", "emergency"}
    assert summary["sla_events"].get("sla.met", 0) > 0
    assert summary["elapsed_seconds"] > 0
    assert summary["broker"].startswith("tansu")
