"""`crisis bench`: throughput, latency and timer lag of the pipeline, against its ceilings, in one run.

All steps run on the same broker and the same (fresh) database, one after the other, so they do
not compete with each other for the machine's cores:

1. raw ceiling: aiokafka alone produces the ``call.received`` events to a fresh topic and consumes them;
2. framework ceiling: a Faust agent that only counts them (``crisis.bench_noop``, a subprocess);
3. pipeline: the same events, pre-published, read by a real worker (``crisis worker``) to Postgres;
4. latency: with that worker running, calls offered at a fixed rate, ``stored_at - occurred_at``;
5. timer lag: running SLA timers and follow-ups written through the store (states built by the
   kinds' own code), fired by ``CallPipeline.fire_due_by_wall_clock``;
6. sink alone: ``PostgresStore`` writing calls and decisions in batches of 1,000.

Start-up (Faust joining its group, the worker's first metadata round) is not part of any rate.
The raw consumer is timed from its first fetch (already assigned and positioned) to its last
record. The Faust agent, between the first and the last batch handed to it: the events after the
first batch over that time. The pipeline, whose ``stored_at`` is each batch's transaction start
(Postgres ``now()``): the events before the last batch over the time from the first batch's start
to the last one's.

Latency on tansu: tansu answers a fetch when the consumer's ``fetch_max_wait_ms`` expires rather
than when data arrives, and Faust asks for 1.5 s, so tansu adds a few hundred milliseconds to every
event; ``broker_idle_fetch_latency_p50_seconds`` measures that alone (a few ms on Apache Kafka).

Steps 1-3 use only ``call.received`` events (one per call), so their rates compare like with like.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from agents.pipeline import CallPipeline
from crisis.publish import publish_events
from crisis.services import (
    REPO_ROOT,
    ApacheKafkaBroker,
    EmbeddedPostgres,
    ServiceError,
    TansuBroker,
    WorkerProcess,
    create_database,
    drop_database,
    free_port,
)
from crisis.simulate import City, SimulatedEvent
from domain.policy import Policy, load_policy
from domain.timers.followup import Followup, FollowupTimer
from domain.timers.sla_arrival import SlaArrival, SlaTimer
from domain.triage import decide, person_ref
from schemas.calls import CallReceived, decode_call_event
from schemas.followups import Contact
from schemas.sla import Response
from sinks.base import BatchWrite, TimerRow
from sinks.migrate import migrate
from sinks.postgres import PostgresStore
from sinks.queries import (
    decision_latency_quantiles,
    decision_stats,
    pipeline_counts,
    stored_events,
    timer_lag_quantiles,
)
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import KafkaPublisher
from streams.topics import ensure_topics

REQUIRED_KEYS = (
    "cores", "raw_aiokafka_events_per_second", "faust_noop_events_per_second", "pipeline_events_per_second",
    "pipeline_vs_faust_noop_ratio", "pipeline_vs_raw_ratio", "latency_p50_seconds", "latency_p99_seconds",
    "timer_lag_p99_seconds", "sink_rows_per_second", "worker_peak_rss_bytes",
)
PARTITIONS = 4
SINK_BATCH = 1000
TIMER_TICK_SECONDS = 0.2
# The first deadline comes this long after the timers start to be written, plus the time writing them
# takes (through the store, as the pipeline writes them: about 12,000 rows a second here).
TIMER_LEAD_SECONDS = 2.0
TIMER_WRITE_SECONDS_PER_ROW = 1 / 8000


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    calls: int = 50_000
    kafka: str = "tansu"  # or "apache"; $KAFKA_BOOTSTRAP wins when set
    latency_seconds: float = 10.0
    latency_rate: float = 500.0
    timers: int = 100_000
    followups: int = 100_000
    # 5,000 timers a second fall due (the rate of the first benchmark's 100,000 SLA timers over 20 s).
    timer_seconds: float = 40.0
    seed: int = 11
    replay_events: int = 0  # 0: skip the replay step
    workers: int = 1  # above 1: also measure the pipeline with 1..N workers in one group


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _rate(events: int, seconds: float) -> float:
    return events / seconds if seconds > 0 else 0.0


# -- services --------------------------------------------------------------------------------------


def _start_broker(stack: contextlib.ExitStack, kind: str) -> tuple[str, str]:
    given = os.environ.get("KAFKA_BOOTSTRAP")
    if given:
        return given, "external"
    if kind == "apache":
        _say("starting Apache Kafka (KRaft, single node)")
        return stack.enter_context(ApacheKafkaBroker()).bootstrap, "apache"
    if kind != "tansu":
        raise ValueError(f"--kafka must be 'tansu' or 'apache', got {kind!r}")
    _say("starting tansu")
    return stack.enter_context(TansuBroker()).bootstrap, "tansu"


def _with_database(url: str, name: str) -> str:
    prefix, _, query = url.partition("?")
    return f"{prefix.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def _start_server(stack: contextlib.ExitStack) -> tuple[str, str]:
    """$DATABASE_URL's server, or an embedded one: (a URL to create databases with, its label)."""
    given = os.environ.get("DATABASE_URL")
    if given:
        return given, "external"
    _say("starting embedded PostgreSQL")
    return stack.enter_context(EmbeddedPostgres()).url(), "postgresql (embedded)"


def _fresh_database(stack: contextlib.ExitStack, admin_url: str, name: str) -> str:
    """A new, migrated database, dropped at the end (an embedded server goes away with its data anyway)."""
    _say(f"creating database {name}")
    asyncio.run(create_database(admin_url, name))
    stack.callback(lambda: asyncio.run(drop_database(admin_url, name)))
    url = _with_database(admin_url, name)
    asyncio.run(migrate(url))
    return url


class PeakRss:
    """Samples a process tree's resident memory in a thread; ``peak`` is the largest sum seen."""

    def __init__(self, pid: int, interval_seconds: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval_seconds
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _sample(self, process: psutil.Process) -> int:
        total = 0
        for proc in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._sample(process))
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# -- 1. raw aiokafka ----------------------------------------------------------------------------


async def _consume_all(bootstrap: str, topic: str, expected: int, stall_seconds: float = 30) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # first look at a new topic
            partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        count = 0
        # Assigned and positioned: from here on, everything is the consumer's work (the first
        # fetch's offset lookup included, a round trip on loopback).
        started = last_at = time.perf_counter()
        while count < expected:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            now = time.perf_counter()
            if got := sum(len(records) for records in batch.values()):
                count += got
                last_at = now
            elif now - last_at > stall_seconds:
                break
    finally:
        await consumer.stop()
    return {"events": count, "events_per_second": _rate(count, last_at - started)}


async def _warm_up(bootstrap: str, topic: str) -> int:
    """One record to each partition of a new topic: Apache Kafka may refuse the first writes to a
    partition whose leader is still being elected (NotLeaderForPartition, retried after a backoff),
    which would otherwise be timed as produce throughput. Returns the records written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        await asyncio.gather(*[await producer.send(topic, b"warm-up", partition=p) for p in partitions])
        return len(partitions)
    finally:
        await producer.stop()


def _step_raw(bootstrap: str, topic: str, events: list[SimulatedEvent], idempotent: bool) -> dict[str, Any]:
    expected = asyncio.run(_warm_up(bootstrap, topic)) + len(events)
    produced = asyncio.run(publish_events(bootstrap, topic, events, idempotent=idempotent))
    consumed = asyncio.run(_consume_all(bootstrap, topic, expected))
    if consumed["events"] < expected:
        raise ServiceError(f"raw consumer read {consumed['events']} of {expected} records from {topic}")
    return {
        "raw_topic_records": expected,
        "raw_aiokafka_produce_events_per_second": _rate(produced.events, produced.elapsed_seconds),
        "raw_aiokafka_events_per_second": consumed["events_per_second"],
    }


# -- 2. Faust, counting only ----------------------------------------------------------------------


def _step_faust_noop(stack: contextlib.ExitStack, bootstrap: str, topic: str, expected: int,
                     run: str) -> dict[str, Any]:
    timeout = 60 + expected / 1000
    workdir = Path(tempfile.mkdtemp(prefix="crisis-bench-noop-"))
    out_path, log_path = workdir / "stdout.json", workdir / "stderr.log"
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "CRISIS_BENCH_TOPIC": topic,
           "CRISIS_BENCH_EXPECTED": str(expected), "CRISIS_BENCH_APP_ID": f"crisis-bench-noop-{run}",
           "CRISIS_BENCH_TIMEOUT_SECONDS": str(timeout)}
    with out_path.open("wb") as out, log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "crisis.bench_noop"], env=env, stdout=out, stderr=log,
                                   cwd=REPO_ROOT, start_new_session=True)

    def kill() -> None:
        if process.poll() is None:
            process.kill()
            process.wait()

    stack.callback(kill)
    try:
        process.wait(timeout + 30)
    except subprocess.TimeoutExpired:
        kill()
    # The worker's spinner writes terminal codes around the line: keep from the first brace.
    lines = [line[line.index("{"):] for line in out_path.read_text().splitlines() if "{" in line]
    if not lines:
        raise ServiceError(f"crisis.bench_noop printed no result:\n{log_path.read_text()[-3000:]}")
    result = json.loads(lines[-1])
    if not result["complete"]:
        raise ServiceError(f"crisis.bench_noop counted {result['events']} of {expected} events: {log_path}")
    shutil.rmtree(workdir, ignore_errors=True)
    return {"faust_noop_events_per_second": result["events_per_second"],
            "faust_noop_startup_seconds": result["startup_seconds"]}


# -- 3. the pipeline, end to end ------------------------------------------------------------------


async def _wait_for_decisions(database_url: str, call_prefix: str, deadletter_topic: str, expected: int,
                              worker: WorkerProcess, timeout_seconds: float) -> int:
    """Poll (with the demo's counts) until ``expected`` decisions of these calls are stored."""
    deadline = time.monotonic() + timeout_seconds
    stored = 0
    while time.monotonic() < deadline:
        stored = (await pipeline_counts(database_url, call_prefix, deadletter_topic))["decisions_stored"]
        if stored >= expected:
            return stored
        if not worker.alive():
            raise ServiceError(f"the worker stopped unexpectedly:\n{worker.log_tail()}")
        await asyncio.sleep(0.25)
    raise ServiceError(f"{stored} of {expected} decisions stored within {timeout_seconds:.0f} s:\n"
                       f"{worker.log_tail()}")


def _step_pipeline(settings: Settings, worker: WorkerProcess, call_prefix: str, expected: int) -> dict[str, Any]:
    started = time.perf_counter()
    deadletter = settings.topic(topics.DEADLETTER)
    asyncio.run(_wait_for_decisions(settings.database_url, call_prefix, deadletter, expected, worker,
                                    120 + expected / 200))
    total = time.perf_counter() - started
    stats = asyncio.run(decision_stats(settings.database_url, call_prefix))
    span = (stats["last"] - stats["first"]).total_seconds()
    return {
        "pipeline_events_per_second": _rate(stats["n"] - stats["last_batch"], span),
        "pipeline_batches": stats["batches"],
        "pipeline_seconds_from_worker_start": total,
    }


# -- 3b. scale-out: the same load on 1..N workers in one consumer group --------------------------------


def _partitions_reported(ports: list[str], partitions: int) -> bool:
    """Whether every partition is owned by one of these workers, each worker owning some (the group settled)."""
    import urllib.request

    owned: list[set[str]] = []
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                body = response.read().decode()
        except OSError:
            return False
        owned.append({line.split('"')[1] for line in body.splitlines()
                      if line.startswith("crisis_consumer_lag_events{")})
    return all(owned) and len(set().union(*owned)) == partitions


def _step_scale_out(stack: contextlib.ExitStack, settings: Settings, policy: Policy, options: BenchOptions,
                    run: str) -> dict[str, Any]:
    """Events per second with 1, 2, ... N workers sharing the partitions: workers first (the group settled),
    then the calls, timed like step 3 (first to last decision stored)."""
    summary: dict[str, Any] = {}
    for count in range(1, options.workers + 1):
        scaled = dataclasses.replace(settings, topic_prefix=f"bench-{run}-w{count}.",
                                     app_id=f"crisis-bench-{run}-w{count}")
        asyncio.run(ensure_topics(scaled))
        workers = [WorkerProcess({**scaled.as_env(), "CRISIS_METRICS_PORT": str(free_port())},
                                 name=f"bench-scale-{count}").start() for _ in range(count)]
        for worker in workers:
            stack.callback(worker.stop)
        ports = [worker.env["CRISIS_METRICS_PORT"] for worker in workers]
        deadline = time.monotonic() + 120
        while not _partitions_reported(ports, PARTITIONS):
            if time.monotonic() > deadline or not all(worker.alive() for worker in workers):
                raise ServiceError(f"{count} workers did not share the partitions:\n{workers[0].log_tail()}")
            time.sleep(0.5)
        city = City(policy, seed=options.seed + 10 + count, run_tag=f"{run}w{count}")
        received = [e for e in city.events(options.calls) if e.type == "call.received"]
        asyncio.run(publish_events(scaled.kafka_bootstrap, scaled.topic(topics.CALLS), received))
        asyncio.run(_wait_for_decisions(scaled.database_url, city.call_prefix, scaled.topic(topics.DEADLETTER),
                                        len(received), workers[0], 120 + len(received) / 200))
        stats = asyncio.run(decision_stats(scaled.database_url, city.call_prefix))
        span = (stats["last"] - stats["first"]).total_seconds()
        summary[f"pipeline_events_per_second_workers_{count}"] = _rate(stats["n"] - stats["last_batch"], span)
        for worker in workers:
            worker.stop()
    return summary


# -- 4. latency at a fixed offered rate -----------------------------------------------------------


async def _offer_at_rate(bootstrap: str, topic: str, events: list[SimulatedEvent], rate: float) -> float:
    """Send ``events`` at ``rate`` per second, each stamped ``occurred_at`` = its send time; returns the rate."""
    bodies = [(event.key.encode(), json.loads(event.value)) for event in events]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        deliveries = []
        started = time.perf_counter()
        for index, (key, body) in enumerate(bodies):
            ahead = started + index / rate - time.perf_counter()
            if ahead > 0.001:
                await asyncio.sleep(ahead)
            body["occurred_at"] = datetime.now(UTC).isoformat()
            deliveries.append(await producer.send(topic, json.dumps(body, separators=(",", ":")).encode(), key=key))
        elapsed = time.perf_counter() - started
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return _rate(len(bodies) - 1, elapsed)


async def _idle_fetch_latency(bootstrap: str, topic: str, messages: int = 20) -> float:
    """Median seconds from send to receive of single messages on an idle partition, for a consumer
    that lets the broker hold a fetch up to 1.5 s (what Faust's consumer asks for). A broker that
    answers a fetch only when its wait expires, not when data arrives, adds this to every latency."""
    partition = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=1500)
    await producer.start()
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        await consumer.position(partition)
        received: list[float] = []

        async def receive() -> None:
            while len(received) < messages:
                for records in (await consumer.getmany(partition, timeout_ms=2000)).values():
                    received.extend(time.time() - float(record.value) for record in records)

        receiving = asyncio.create_task(receive())
        for _ in range(messages):
            await (await producer.send(topic, str(time.time()).encode(), partition=0))
            await asyncio.sleep(0.05)
        await asyncio.wait_for(receiving, 30)
        return sorted(received)[len(received) // 2]
    finally:
        await consumer.stop()
        await producer.stop()


def _step_latency(settings: Settings, worker: WorkerProcess, policy: Policy, options: BenchOptions,
                  run: str, probe_topic: str) -> dict[str, Any]:
    idle_fetch = asyncio.run(_idle_fetch_latency(settings.kafka_bootstrap, probe_topic))
    count = max(2, round(options.latency_rate * options.latency_seconds))
    city = City(policy, seed=options.seed + 1, run_tag=f"{run}l")
    events = [e for e in city.events(count) if e.type == "call.received"]
    offered = asyncio.run(_offer_at_rate(settings.kafka_bootstrap, settings.topic(topics.CALLS), events,
                                         options.latency_rate))
    asyncio.run(_wait_for_decisions(settings.database_url, city.call_prefix, settings.topic(topics.DEADLETTER),
                                    count, worker, 60))
    stats = asyncio.run(decision_latency_quantiles(settings.database_url, city.call_prefix))
    p50, p99 = stats["q"]
    return {"latency_calls": stats["n"], "latency_offered_events_per_second": offered,
            "broker_idle_fetch_latency_p50_seconds": idle_fetch,
            "latency_p50_seconds": p50, "latency_p99_seconds": p99, "latency_max_seconds": stats["max"]}


# -- 5. timer lag -----------------------------------------------------------------------------------


def _pending_timers(policy: Policy, prefix: str, sla_timers: int, followups: int, start: datetime,
                    window_seconds: float) -> list[TimerRow]:
    """Running timers of both kinds whose deadlines are spread over the window: ``sla_timers``
    first-response timers (a warning, then a breach shortly after) and ``followups`` open follow-ups
    (attempt 1 becomes overdue). States are built by the kinds' own code, as the pipeline stores them."""
    sla, followup = SlaArrival(policy), Followup(policy)
    breach_gap = timedelta(seconds=min(2.0, window_seconds / 10))
    span = timedelta(seconds=window_seconds) - breach_gap
    grace = policy.followup.overdue_grace
    rows = []
    for index in range(sla_timers):
        warning_at = start + span * (index / sla_timers)
        timer = SlaTimer(f"{prefix}s{index:07d}", Response.FIRST, warning_at - timedelta(minutes=10), warning_at,
                         warning_at + breach_gap, "district-1")
        rows.append(TimerRow(sla.name, timer.call_id, 0, index % PARTITIONS, sla.encode(timer), timer.next_deadline))
    for index in range(followups):
        overdue_at = start + span * (index / followups)
        due = overdue_at - grace
        ended = due - policy.followup.attempt_due_after(1)
        state = FollowupTimer(f"{prefix}f{index:07d}", Contact.DIVERSION_LINE, ended, "resolved_by_phone",
                              tuple(ended + policy.followup.attempt_due_after(n)
                                    for n in range(1, policy.followup.attempts_before_dropout + 1)),
                              grace.total_seconds(), ended + policy.followup.expire_after, district="district-1")
        rows.append(TimerRow(followup.name, state.call_id, 0, index % PARTITIONS, followup.encode(state),
                             state.next_deadline))
    return rows


async def _insert_timers(database_url: str, rows: list[TimerRow], start: datetime) -> None:
    store = await PostgresStore.connect(database_url)
    try:
        for first in range(0, len(rows), 10_000):
            async with store.transaction() as tx:
                await tx.write(BatchWrite(timers=rows[first:first + 10_000]))
    finally:
        await store.close()
    late = (datetime.now(UTC) - start).total_seconds()
    if late > 0:
        _say(f"warning: inserting the timers took {late:.2f} s longer than the lead time: early lag inflated")


async def _fire_timers(settings: Settings, policy: Policy, expected_events: int, until_seconds: float) -> int:
    store = await PostgresStore.connect(settings.database_url)
    publisher = KafkaPublisher(settings.kafka_bootstrap, idempotent=settings.kafka_idempotent_producer)
    await publisher.start()
    fired = 0
    try:
        pipeline = CallPipeline(dataclasses.replace(settings, timer_lateness_seconds=0.0, timer_clock="wall"),
                                policy, store, publisher, PipelineMetrics(CollectorRegistry()))
        give_up = time.monotonic() + until_seconds
        tick = time.monotonic()
        while time.monotonic() < give_up:
            fired += await pipeline.fire_due_by_wall_clock()
            if fired >= expected_events:
                return fired
            tick += TIMER_TICK_SECONDS
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        raise ServiceError(f"{fired} of {expected_events} timer events fired after {until_seconds:.0f} s")
    finally:
        await publisher.stop()
        await store.close()


def _step_timers(stack: contextlib.ExitStack, admin_url: str, settings: Settings, policy: Policy,
                 options: BenchOptions, run: str) -> dict[str, Any]:
    # A database of its own: timers the pipeline step left running follow a simulated day long gone,
    # and the ticker fires every running timer it finds.
    database_url = _fresh_database(stack, admin_url, f"crisis_bench_{run}_timers")
    prefix = f"bench-timer-{run}-"
    lead = TIMER_LEAD_SECONDS + (options.timers + options.followups) * TIMER_WRITE_SECONDS_PER_ROW
    start = datetime.now(UTC) + timedelta(seconds=lead)
    rows = _pending_timers(policy, prefix, options.timers, options.followups, start, options.timer_seconds)
    asyncio.run(_insert_timers(database_url, rows, start))
    expected = 2 * options.timers + options.followups  # warning + breach; one overdue attempt
    fired = asyncio.run(_fire_timers(dataclasses.replace(settings, database_url=database_url), policy, expected,
                                     lead + options.timer_seconds + 120))
    stats = asyncio.run(timer_lag_quantiles(database_url, prefix))
    p50, p99 = stats["q"]
    return {"timers": options.timers, "followups_pending": options.followups, "timer_events_fired": fired,
            "timer_lag_p50_seconds": p50, "timer_lag_p99_seconds": p99, "timer_lag_max_seconds": stats["max"]}


# -- 6. the sink alone ------------------------------------------------------------------------------


async def _write_sink(database_url: str, calls: Sequence[CallReceived], policy: Policy, key: bytes) -> dict[str, Any]:
    store = await PostgresStore.connect(database_url)
    rows = 0
    writing = 0.0
    try:
        for start in range(0, len(calls), SINK_BATCH):
            chunk = calls[start:start + SINK_BATCH]
            batch = BatchWrite(calls=[(call, person_ref(call.caller_phone, key)) for call in chunk],
                               decisions=[decide(call, policy, key) for call in chunk])
            began = time.perf_counter()  # only the store's work is timed, not building the rows
            async with store.transaction() as tx:
                await tx.write(batch)
            writing += time.perf_counter() - began
            rows += len(batch.calls) + len(batch.decisions)
    finally:
        await store.close()
    return {"sink_rows": rows, "sink_rows_per_second": _rate(rows, writing)}


def _step_sink(settings: Settings, policy: Policy, options: BenchOptions, run: str) -> dict[str, Any]:
    city = City(policy, seed=options.seed + 2, run_tag=f"{run}s")
    calls = [decode_call_event(e.value) for e in city.events(options.calls) if e.type == "call.received"]
    received = [call for call in calls if isinstance(call, CallReceived)]
    return asyncio.run(_write_sink(settings.database_url, received, policy, settings.pseudonym_key.encode()))


# -- the run ----------------------------------------------------------------------------------------


# -- 7. replay of a recorded file (optional) ------------------------------------------------------


def _step_replay(stack: contextlib.ExitStack, settings: Settings, policy: Policy, options: BenchOptions,
                 run: str) -> dict[str, Any]:
    """A recorded file of every event type, replayed with ``crisis replay``'s code into a fresh
    worker; timed from the replay's start to the last event stored."""
    from crisis.replay import replay_file

    replay = dataclasses.replace(settings, topic_prefix=f"bench-{run}-replay.", app_id=f"crisis-bench-{run}-replay")
    asyncio.run(ensure_topics(replay))
    city = City(policy, seed=options.seed + 1, run_tag=f"{run}r")
    events: list[SimulatedEvent] = []
    calls = max(1, options.replay_events // 4)
    while len(events) < options.replay_events:
        events = city.events(calls)
        calls = int(calls * options.replay_events / max(1, len(events))) + 1
    events = events[: options.replay_events]
    path = Path(tempfile.mkdtemp(prefix="crisis-bench-replay-")) / "recorded.jsonl"
    stack.callback(shutil.rmtree, path.parent, True)
    with path.open("wb") as handle:
        for event in events:
            handle.write(event.value + b"\n")
    worker = WorkerProcess({**replay.as_env(), "CRISIS_METRICS_PORT": str(free_port())},
                           name="bench-replay-worker").start()
    stack.callback(worker.stop)
    time.sleep(8)  # the worker joins its group before the clock starts
    started = time.monotonic()
    published = asyncio.run(replay_file(path, replay.kafka_bootstrap, replay.topic(topics.CALLS),
                                        idempotent=replay.kafka_idempotent_producer))
    publish_seconds = time.monotonic() - started
    deadline = started + 1800
    while (stored := asyncio.run(stored_events(replay.database_url, city.call_prefix))) < len(events):
        if not worker.alive() or time.monotonic() > deadline:
            raise ServiceError(f"replay stalled at {stored} of {len(events)} events\n{worker.log_tail()}")
        time.sleep(0.5)
    seconds = time.monotonic() - started
    worker.stop()
    return {"replay_events": published.events_published, "replay_publish_seconds": publish_seconds,
            "replay_seconds": seconds, "replay_events_per_second": _rate(len(events), seconds)}


def _round(summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, float):
            value = round(value, 1) if key.endswith("per_second") else round(value, 4)
        out[key] = value
    return out


def _stop_on_sigterm(stack: contextlib.ExitStack) -> None:
    """SIGTERM unwinds the stack like Ctrl-C does: the services run in their own sessions and would
    otherwise outlive us."""
    if threading.current_thread() is not threading.main_thread():
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    stack.callback(signal.signal, signal.SIGTERM, previous)


def run_bench(options: BenchOptions, say: Callable[[str], None] = _say) -> dict[str, Any]:
    """Start what is missing, run the six steps, stop everything (also on error), return the numbers."""
    started = time.monotonic()
    run = uuid.uuid4().hex[:6]
    summary: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "calls": options.calls,
    }
    policy = load_policy()
    with contextlib.ExitStack() as stack:
        _stop_on_sigterm(stack)
        bootstrap, summary["broker"] = _start_broker(stack, options.kafka)
        # Fresh databases: the timer step fires every running timer in its own, so never a shared one.
        admin_url, summary["database"] = _start_server(stack)
        database_url = _fresh_database(stack, admin_url, f"crisis_bench_{run}")
        # Worker tuning from the environment (CRISIS_BATCH_* ...) applies, so settings can be compared.
        settings = dataclasses.replace(
            Settings.from_env(), kafka_bootstrap=bootstrap, database_url=database_url,
            topic_prefix=f"bench-{run}.", app_id=f"crisis-bench-{run}", partitions=PARTITIONS,
            timer_clock="event", broker_session_timeout_seconds=10.0,
            pseudonym_key=os.environ.get("CRISIS_PSEUDONYM_KEY") or secrets.token_hex(32),
            # tansu has no idempotent producers (InitProducerId)
            kafka_idempotent_producer=summary["broker"] != "tansu",
        )
        raw = dataclasses.replace(settings, topic_prefix=f"bench-{run}-raw.")
        asyncio.run(ensure_topics(settings))
        asyncio.run(ensure_topics(raw))

        city = City(policy, seed=options.seed, run_tag=run)
        received = [e for e in city.events(options.calls) if e.type == "call.received"]

        say(f"1/6 raw aiokafka: producing and consuming {len(received):,} call.received events")
        summary.update(_step_raw(bootstrap, raw.topic(topics.CALLS), received, settings.kafka_idempotent_producer))

        say("2/6 Faust agent that only counts (subprocess crisis.bench_noop)")
        summary.update(_step_faust_noop(stack, bootstrap, raw.topic(topics.CALLS), summary["raw_topic_records"], run))

        say(f"3/6 pipeline: {len(received):,} events pre-published, one worker to Postgres")
        asyncio.run(publish_events(bootstrap, settings.topic(topics.CALLS), received,
                                   idempotent=settings.kafka_idempotent_producer))
        worker = WorkerProcess({**settings.as_env(), "CRISIS_METRICS_PORT": str(free_port())},
                               name="bench-worker").start()
        stack.callback(worker.stop)
        assert worker.process is not None
        with PeakRss(worker.process.pid) as rss:
            summary.update(_step_pipeline(settings, worker, city.call_prefix, len(received)))
            say(f"4/6 latency: {options.latency_rate:g} calls/s for {options.latency_seconds:g} s")
            summary.update(_step_latency(settings, worker, policy, options, run, raw.topic(topics.TRIAGE)))
        worker.stop()
        summary["worker_peak_rss_bytes"] = rss.peak

        say(f"5/6 timer lag: {options.timers:,} SLA timers and {options.followups:,} follow-ups due over"
            f" {options.timer_seconds:g} s, fired every {TIMER_TICK_SECONDS} s")
        summary.update(_step_timers(stack, admin_url, settings, policy, options, run))

        say(f"6/6 sink alone: calls and decisions in batches of {SINK_BATCH}")
        summary.update(_step_sink(settings, policy, options, run))
        if options.workers > 1:
            say(f"scale-out: {options.calls:,} calls on 1 to {options.workers} workers in one consumer group")
            summary.update(_step_scale_out(stack, settings, policy, options, run))
        if options.replay_events:
            say(f"7 replay: {options.replay_events:,} recorded events of every type through a fresh worker")
            summary.update(_step_replay(stack, settings, policy, options, run))
        say("stopping services")

    noop, raw_rate, pipeline = (summary["faust_noop_events_per_second"], summary["raw_aiokafka_events_per_second"],
                                summary["pipeline_events_per_second"])
    summary["pipeline_vs_faust_noop_ratio"] = pipeline / noop if noop else 0.0
    summary["pipeline_vs_raw_ratio"] = pipeline / raw_rate if raw_rate else 0.0
    summary["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    summary["elapsed_seconds"] = time.monotonic() - started
    ordered = {key: summary[key] for key in ("date", "broker", "database", "calls", *REQUIRED_KEYS)}
    return _round({**ordered, **summary})
