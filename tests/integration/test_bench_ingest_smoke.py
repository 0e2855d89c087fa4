"""`crisis bench-ingest` end to end, short: both phases run and report their numbers. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from crisis.services import REPO_ROOT

pytestmark = pytest.mark.integration

PHASE_KEYS = ("requests", "accepted", "errors", "requests_per_second", "events_per_second",
              "latency_p50_seconds", "latency_p99_seconds")


def test_bench_ingest_reports_single_and_batch_figures_on_tansu():
    env = {key: value for key, value in os.environ.items() if key not in ("KAFKA_BOOTSTRAP", "CRISIS_TOPIC_PREFIX")}
    result = subprocess.run(
        [sys.executable, "-m", "crisis.cli", "bench-ingest", "--json", "--kafka", "tansu", "--seconds", "1",
         "--concurrency", "4"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])

    assert summary["broker"] == "tansu" and summary["concurrency"] == 4
    for phase in ("single", "batch_100"):
        figures = summary[phase]
        assert set(PHASE_KEYS) <= set(figures), figures
        assert figures["errors"] == 0 and figures["accepted"] == figures["requests"] > 0, figures
        assert figures["latency_p99_seconds"] >= figures["latency_p50_seconds"] > 0, figures
    assert summary["batch_100"]["events_per_second"] == pytest.approx(
        summary["batch_100"]["requests_per_second"] * 100, rel=0.01)
