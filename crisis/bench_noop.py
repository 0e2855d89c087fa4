"""The framework's ceiling: a Faust agent that only counts events. ``python -m crisis.bench_noop``.

No decoding, no sink, no sends: ``stream.take(...)`` batches of raw bytes, counted. Configured by
environment; prints one JSON object on stdout once ``CRISIS_BENCH_EXPECTED`` events were consumed
(or the timeout passed), then stops.

- ``KAFKA_BOOTSTRAP``: the broker; ``CRISIS_BENCH_TOPIC``: the topic to read from the beginning;
- ``CRISIS_BENCH_EXPECTED``: how many events to wait for; ``CRISIS_BENCH_APP_ID``: consumer group;
- ``CRISIS_BENCH_TAKE`` (2000) and ``CRISIS_BENCH_WITHIN_SECONDS`` (0.05): the batch;
- ``CRISIS_BENCH_TIMEOUT_SECONDS`` (300): give up and report what was counted.

The rate is measured between the first and the last batch handed to the agent: the events after
the first batch divided by that time. Faust's start-up and group join are not part of it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import faust

from streams.app import broker_urls


def main() -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092")
    topic_name = os.environ["CRISIS_BENCH_TOPIC"]
    expected = int(os.environ["CRISIS_BENCH_EXPECTED"])
    take = int(os.environ.get("CRISIS_BENCH_TAKE", "2000"))
    within = float(os.environ.get("CRISIS_BENCH_WITHIN_SECONDS", "0.05"))
    timeout = float(os.environ.get("CRISIS_BENCH_TIMEOUT_SECONDS", "300"))
    app_id = os.environ.get("CRISIS_BENCH_APP_ID") or f"crisis-bench-noop-{uuid.uuid4().hex[:6]}"
    app = faust.App(
        app_id,
        broker=broker_urls(bootstrap),
        store="memory://",
        datadir=str(Path(tempfile.gettempdir()) / f"faust-{app_id}"),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10,
        broker_heartbeat_interval=3,
        broker_rebalance_timeout=10,
        autodiscover=False,
    )
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    state = {"count": 0, "batches": 0, "first_batch": 0, "first_at": 0.0, "last_at": 0.0, "reported": False}
    started = time.perf_counter()

    def report(complete: bool) -> None:
        if state["reported"]:
            return
        state["reported"] = True
        counted, first_batch = state["count"], state["first_batch"]
        span = state["last_at"] - state["first_at"]
        rate = (counted - first_batch) / span if span > 0 else 0.0
        print(json.dumps({
            "events": counted, "expected": expected, "complete": complete, "batches": state["batches"],
            "events_per_second": round(rate, 1), "span_seconds": round(span, 4),
            "startup_seconds": round(state["first_at"] - started, 3) if state["first_at"] else None,
            "take": take, "within_seconds": within,
        }), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # the Faust worker's own graceful shutdown

    @app.agent(topic)
    async def count(stream: faust.StreamT) -> None:
        async for values in stream.take(take, within=within):
            now = time.perf_counter()
            if not state["batches"]:
                state["first_at"], state["first_batch"] = now, len(values)
            state["batches"] += 1
            state["count"] += len(values)
            state["last_at"] = now
            if state["count"] >= expected:
                report(True)

    @app.timer(1.0)
    async def give_up() -> None:
        if time.perf_counter() - started > timeout:
            print(f"bench_noop: timeout after {timeout} s with {state['count']} of {expected} events",
                  file=sys.stderr)
            report(False)

    faust.Worker(app, loglevel=os.environ.get("CRISIS_LOG_LEVEL", "warning"), quiet=True,
                 redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
