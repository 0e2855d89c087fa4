"""`crisis bench-ingest`: requests per second and latency of the HTTP front door, single events and batches.

Starts what it needs (Apache Kafka or tansu unless $KAFKA_BOOTSTRAP is set, and `crisis ingest` in
its own process), then drives it from this process with ``concurrency`` connections for ``seconds``
per phase: one `call.received` per request, then NDJSON batches of ``batch`` events. Latency is
the client's view, from sending a request to reading its 202, so it includes Kafka's acks=all.
The load generator shares the machine with the service and the broker: on few cores it limits
the numbers too (they are printed with the core count).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crisis.ingest.auth import hash_token, new_token
from crisis.services import ApacheKafkaBroker, IngestProcess, TansuBroker, free_port
from streams import topics
from streams.config import Settings
from streams.topics import ensure_topics


@dataclass(frozen=True)
class IngestBenchOptions:
    """The broker to start, seconds of load per phase, connections, events per batch."""

    kafka: str = "apache"
    seconds: float = 10.0
    concurrency: int = 16
    batch: int = 100
    warmup_seconds: float = 2.0


def _call(center: str, n: int, run: str) -> bytes:
    call_id = f"{center}:bench-{run}-{n}"
    return json.dumps({
        "type": "call.received", "event_id": f"{call_id}:received", "call_id": call_id,
        "occurred_at": datetime.now(UTC).isoformat(), "center_id": center, "nature_code": "25A1",
        "district": "d1", "caller_phone": f"+1314555{n % 10000:04d}",
    }, separators=(",", ":")).encode()


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _phase(url: str, token: str, seconds: float, concurrency: int, batch: int, run: str,
                 counter: list[int]) -> dict[str, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "application/json" if batch == 1 else "application/x-ndjson"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        """One connection's loop: post, time, repeat until the phase ends."""
        while time.perf_counter() < deadline:
            first = counter[0]
            counter[0] += batch
            body = b"\n".join(_call("bench-911", first + i, run) for i in range(batch))
            started = time.perf_counter()
            async with session.post(url + "/v1/events", data=body, headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status == 202:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    accepted = statuses.get(202, 0)
    return {
        "requests": sum(statuses.values()),
        "accepted": accepted,
        "errors": sum(n for status, n in statuses.items() if status != 202),
        **({"error_statuses": {str(k): v for k, v in statuses.items() if k != 202}}
           if any(k != 202 for k in statuses) else {}),
        "requests_per_second": round(accepted / elapsed, 1),
        "events_per_second": round(accepted * batch / elapsed, 1),
        "latency_p50_seconds": round(_quantile(latencies, 0.50), 4),
        "latency_p99_seconds": round(_quantile(latencies, 0.99), 4),
    }


async def _drive(url: str, token: str, options: IngestBenchOptions) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    counter = [0]
    # Warm up both shapes (connections, producer metadata, the service's code paths) unmeasured.
    await _phase(url, token, options.warmup_seconds, options.concurrency, 1, run, counter)
    await _phase(url, token, options.warmup_seconds, options.concurrency, options.batch, run, counter)
    single = await _phase(url, token, options.seconds, options.concurrency, 1, run, counter)
    batches = await _phase(url, token, options.seconds, options.concurrency, options.batch, run, counter)
    return {"single": single, f"batch_{options.batch}": batches}


def run_ingest_bench(options: IngestBenchOptions) -> dict[str, Any]:
    """Start the broker and the service, measure both phases, stop everything; the summary as a dict."""
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
        broker = "external"
        if not bootstrap:
            started: ApacheKafkaBroker | TansuBroker = ApacheKafkaBroker() if options.kafka == "apache" \
                else TansuBroker()
            stack.enter_context(started)
            bootstrap, broker = started.bootstrap, options.kafka
        run = uuid.uuid4().hex[:6]
        settings = dataclasses.replace(Settings.from_env(), kafka_bootstrap=bootstrap,
                                       topic_prefix=f"bench-ingest-{run}.", partitions=4)
        asyncio.run(ensure_topics(settings))
        token = new_token()
        ingest = IngestProcess({
            **settings.as_env(), "CRISIS_INGEST_PORT": str(free_port()), "CRISIS_INGEST_METRICS_PORT": "0",
            "CRISIS_INGEST_TOKENS": f"bench-911={hash_token(token)}",
            "CRISIS_INGEST_MAX_BATCH_EVENTS": str(max(options.batch, 1000)),
            "KAFKA_IDEMPOTENT_PRODUCER": "false" if broker == "tansu" else "true",
        }, name="bench-ingest").start()
        stack.callback(ingest.stop)
        results = asyncio.run(_drive(ingest.url, token, options))
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": broker,
        "cores": os.cpu_count(),
        "concurrency": options.concurrency,
        "seconds_per_phase": options.seconds,
        "topic": settings.topic(topics.CALLS),
        **results,
    }
