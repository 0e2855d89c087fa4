"""`crisis bench` end to end, small: every step runs and reports a number. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from crisis.bench import REQUIRED_KEYS
from crisis.services import REPO_ROOT

pytestmark = pytest.mark.integration


def test_bench_reports_every_number_on_tansu():
    env = {key: value for key, value in os.environ.items() if key not in ("KAFKA_BOOTSTRAP", "CRISIS_TOPIC_PREFIX")}
    process = subprocess.Popen(
        [sys.executable, "-m", "crisis.cli", "bench", "--json", "--kafka", "tansu", "--calls", "2000",
         "--latency-seconds", "2", "--latency-rate", "200", "--timers", "2000", "--followups", "1000",
         "--timer-seconds", "3"],
        env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM: the bench stops the broker, Postgres and its worker
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"crisis bench did not finish within 240 s:\n{stderr[-4000:]}")
    assert process.returncode == 0, stderr[-4000:]
    summary = json.loads(stdout.strip().splitlines()[-1])

    missing = [key for key in REQUIRED_KEYS if key not in summary]
    assert not missing, summary
    not_positive = {key: summary[key] for key in REQUIRED_KEYS
                    if not isinstance(summary[key], int | float) or summary[key] <= 0}
    assert not not_positive, summary
    assert summary["broker"] == "tansu"
    assert summary["calls"] == 2000
    assert summary["latency_calls"] == 400
    assert summary["timer_events_fired"] == 5000  # a warning and a breach per SLA timer, one overdue per follow-up
    assert summary["date"]
    # Progress went to stderr, not into the JSON on stdout.
    assert "1/6" in stderr and "1/6" not in stdout
