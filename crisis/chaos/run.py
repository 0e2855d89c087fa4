"""One fault-injection run: its own database, topics and consumer group, workers, input, faults and check.

A scenario drives a ``ChaosRun``:

1. ``prepare``: build the seeded stream, create the database (migrated, the worker logging in as a
   member of ``crisis_worker``: every run also proves the least-privilege grants suffice) and the
   topics, then start the input (``Feeder``) and the worker;
2. faults, each at a moment chosen by progress (``reached``: a share of the input stored), so a
   slow machine moves the moments, never the plan; ``begin_fault`` / ``end_fault`` around each;
3. ``finish``: wait until everything the expected outcome holds is stored and the consumer group
   has committed the whole input, stop the workers, and check record by record
   (``crisis.chaos.checker``), plus every partner topic, the workers' logs and their ``/metrics``
   for personal data (``crisis.chaos.pii_scan``).

A worker that dies on its own is restarted (as compose's ``restart: unless-stopped`` would) and
counted: the report says how often it happened. Recovery is measured from the end of each fault
to the first record stored after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import statistics
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agents.decoding import InboundRecord
from crisis.chaos.checker import Verdict, check_accounted, check_store, check_topic, stored_ids_by_topic
from crisis.chaos.feeder import Feeder
from crisis.chaos.kafka_admin import committed_lag, read_topic
from crisis.chaos.pii_scan import Hit, PersonalDataScanner
from crisis.chaos.reference import Expected, expected_outcome
from crisis.chaos.stream import ChaosStream, build_stream
from crisis.services import WorkerProcess, create_database, drop_database, free_port
from domain.policy import Policy, load_policy
from schemas.fields import TimeWindow
from sinks.migrate import migrate
from sinks.roles import ensure_login
from sinks.verification import StoredState, accounted_records, stored_state
from streams import topics
from streams.config import Settings
from streams.topics import ensure_topics

log = logging.getLogger(__name__)

PARTNER_TOPICS = (topics.TRIAGE, topics.SLA, topics.FOLLOWUPS)
# Event time a record may come late and still count: far more than a feeder's retry reorders
# (one chunk), so the expected outcome does not depend on where the worker's batches fall.
CHAOS_LATENESS_SECONDS = 6 * 3600
POLL_SECONDS = 0.25


async def _poll(done: Callable[[], bool], timeout_seconds: float) -> bool:
    """Until ``done()`` (True) or the timeout (False), looking every ``POLL_SECONDS``."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)


@dataclass
class Deployment:
    """Where a run's workers and the suite itself reach Kafka and Postgres."""

    kafka_bootstrap: str  # the suite's own way in (never through a fault)
    kafka_options: Mapping[str, Any]  # the suite's client options (SASL/TLS)
    admin_url: Callable[[str], str]  # superuser DSN of a database, for setup and checks
    worker_url: Callable[[str, str, str], str]  # (database, user, password) -> the worker's DSN
    worker_bootstrap: str | None = None  # the workers' way in, when it differs (a proxy)
    worker_settings: Mapping[str, Any] = field(default_factory=dict)  # Settings fields (security, replication)


@dataclass
class Fault:
    """One injected fault: when it began and ended, and when records were stored again after it."""

    kind: str
    started: float
    ended: float | None = None
    baseline: int | None = None  # records stored when the fault ended
    recovered: float | None = None
    idle: bool = False  # nothing was left to store when it ended: no recovery to measure

    @property
    def recovery_seconds(self) -> float | None:
        if self.ended is None or self.recovered is None:
            return None
        return max(0.0, self.recovered - self.ended)

    @property
    def outage_seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class RunOutcome:
    """Everything a scenario reports about its run (see ``crisis.chaos.report``)."""

    name: str
    events_sent: int
    inbound_records: int
    faults: list[Fault]
    verdict: Verdict
    personal_data_hits: list[Hit]
    unplanned_worker_exits: int
    dead_lettered: int
    elapsed_seconds: float
    complete: bool
    extra: dict[str, Any] = field(default_factory=dict)
    # What the check compared, for scenario-specific checks (not in the summary).
    expected: Expected | None = field(default=None, repr=False)
    stored: StoredState | None = field(default=None, repr=False)
    inbound: list[InboundRecord] = field(default_factory=list, repr=False)
    stream: ChaosStream | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return self.complete and self.verdict.ok and not self.personal_data_hits

    @property
    def recoveries(self) -> list[float]:
        return [fault.recovery_seconds for fault in self.faults if fault.recovery_seconds is not None]

    def summary(self) -> dict[str, Any]:
        recoveries = self.recoveries
        return {
            "scenario": self.name,
            "events_sent": self.events_sent,
            "inbound_records": self.inbound_records,
            "faults": len(self.faults),
            "lost": sum(self.verdict.lost.values()),
            "duplicated": sum(self.verdict.duplicated.values()),
            "unexpected": sum(self.verdict.unexpected.values()),
            "mismatched": sum(self.verdict.mismatched.values()),
            "dead_lettered": self.dead_lettered,
            "dead_letters_expected": self.verdict.expected.get("dead_letters", 0),
            "duplicates_dropped_by_consumers": self.verdict.duplicates_dropped,
            "recovery_seconds_max": round(max(recoveries), 1) if recoveries else None,
            "recovery_seconds_median": round(statistics.median(recoveries), 1) if recoveries else None,
            "recovery_seconds": [round(r, 1) for r in recoveries],
            "unrecovered_faults": sum(1 for fault in self.faults if fault.recovery_seconds is None and not fault.idle),
            "personal_data_hits": len(self.personal_data_hits),
            "unplanned_worker_exits": self.unplanned_worker_exits,
            "elapsed_seconds": round(self.elapsed_seconds, 1),
            "complete": self.complete,
            "passed": self.passed,
            "problems": self.verdict.problems[:20]
            + [f"personal data ({hit.kind}) in {hit.source} at {hit.offset}" for hit in self.personal_data_hits[:10]],
            **self.extra,
        }


class ChaosRun:
    """One scenario's deployment and its bookkeeping (see the module docstring)."""

    def __init__(self, name: str, deployment: Deployment, events: int, seed: int = 7,
                 publish_rate: float | None = 2500.0, timeout_seconds: float = 900.0,
                 policy: Policy | None = None, stream: ChaosStream | None = None, tag: str | None = None) -> None:
        self.name = name
        self.deployment = deployment
        self.events_wanted = events
        self.seed = seed
        self.publish_rate = publish_rate
        self.timeout_seconds = timeout_seconds
        self.policy = policy or load_policy()
        self.tag = tag or uuid.uuid4().hex[:8]
        self.database = f"crisis_chaos_{self.tag}"
        self.worker_user = "crisis_chaos_worker"
        self.worker_password = secrets.token_hex(16)
        self.stream = stream
        self.workers: list[WorkerProcess] = []
        self.killed: set[int] = set()  # ids of the workers we killed on purpose
        self.unplanned_exits = 0
        self.faults: list[Fault] = []
        self.samples: list[tuple[float, int]] = []  # (monotonic time, records accounted)
        self.metrics_pages: list[str] = []
        self.searched: list[str] = []  # extra outputs searched for personal data (names)
        self.started = time.monotonic()
        self.feeder: Feeder | None = None
        self._feeding: asyncio.Task[None] | None = None
        self._monitoring: asyncio.Task[None] | None = None
        base = Settings(
            kafka_bootstrap=deployment.worker_bootstrap or deployment.kafka_bootstrap,
            database_url=deployment.worker_url(self.database, self.worker_user, self.worker_password),
            app_id=f"crisis-chaos-{self.tag}", topic_prefix=f"chaos-{self.tag}.", partitions=4,
            pseudonym_key=secrets.token_hex(32), timer_clock="event", timer_lateness_seconds=CHAOS_LATENESS_SECONDS,
            timer_tick_seconds=0.5, broker_session_timeout_seconds=6.0,
        )
        self.settings = dataclasses.replace(base, **dict(deployment.worker_settings))

    # -- setup ------------------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        return self.deployment.admin_url(self.database)

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    async def prepare(self, workers: int = 1) -> None:
        """Stream, database, login, topics; then the input and ``workers`` workers start."""
        if self.stream is None:
            self.stream = await asyncio.to_thread(build_stream, self.policy, self.events_wanted, self.seed, self.tag)
        await create_database(self.deployment.admin_url("postgres"), self.database)
        await migrate(self.admin_url)
        await ensure_login(self.admin_url, self.worker_user, self.worker_password, "crisis_worker")
        harness = dataclasses.replace(self.settings, kafka_bootstrap=self.deployment.kafka_bootstrap)
        await ensure_topics(harness)
        self.feeder = Feeder(self.deployment.kafka_bootstrap, self.deployment.kafka_options, self.topic(topics.CALLS),
                             self.stream.events, self.publish_rate)
        self._feeding = asyncio.create_task(self.feeder.run())
        for _ in range(workers):
            self.start_worker()
        self._monitoring = asyncio.create_task(self._monitor())

    def start_worker(self, **env: str) -> WorkerProcess:
        worker_env = {**self.settings.as_env(), "CRISIS_METRICS_PORT": str(free_port()), **env}
        worker = WorkerProcess(worker_env, name=f"chaos-{self.name}").start()
        self.workers.append(worker)
        return worker

    def alive_workers(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.alive()]

    def kill_worker(self, worker: WorkerProcess) -> None:
        """SIGKILL, on purpose (not counted as an unplanned exit)."""
        self.killed.add(id(worker))
        worker.kill()

    # -- progress and faults ------------------------------------------------------------------

    async def _monitor(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # Postgres is down on purpose, or busy: no sample this time
                self.samples.append((time.monotonic(), await accounted_records(self.admin_url)))
            for worker in list(self.workers):
                if not worker.alive() and id(worker) not in self.killed:
                    self.killed.add(id(worker))
                    self.unplanned_exits += 1
                    log.warning("worker exited on its own; restarting it. Log tail:\n%s", worker.log_tail(2000))
                    self.start_worker()
            self._mark_recoveries()
            await asyncio.sleep(POLL_SECONDS)

    def _mark_recoveries(self) -> None:
        for fault in self.faults:
            if fault.ended is None or fault.recovered is not None:
                continue
            before = [count for at, count in self.samples if at <= fault.ended]
            baseline = fault.baseline if fault.baseline is not None else (before[-1] if before else 0)
            after = [at for at, count in self.samples if at > fault.ended and count > baseline]
            if after:
                fault.recovered = after[0]

    def accounted(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    async def reached(self, share: float, timeout_seconds: float | None = None) -> None:
        """Wait until ``share`` of the input is stored (or the timeout: then go on, the check will tell)."""
        assert self.stream is not None
        target = int(share * len(self.stream.events))
        await _poll(lambda: self.accounted() >= target, timeout_seconds or self.timeout_seconds)

    def begin_fault(self, kind: str) -> Fault:
        fault = Fault(kind, time.monotonic())
        self.faults.append(fault)
        log.info("[%s] fault %d: %s", self.name, len(self.faults), kind)
        return fault

    async def end_fault(self, fault: Fault) -> None:
        """The fault is over: what is stored from now on is recovery (counted from here)."""
        fault.ended = time.monotonic()
        with contextlib.suppress(Exception):
            fault.baseline = await accounted_records(self.admin_url)
        assert self.stream is not None and self._feeding is not None
        fault.idle = self._feeding.done() and (fault.baseline or 0) >= len(self.stream.events)

    def drained(self) -> bool:
        """All input published and stored: nothing left for a fault to delay."""
        assert self.stream is not None and self._feeding is not None
        return self._feeding.done() and self.accounted() >= len(self.stream.events)

    async def wait_recovered(self, fault: Fault, timeout_seconds: float = 300) -> None:
        """Until records are stored again after ``fault`` ended, or nothing is left to store (or the timeout)."""
        await _poll(lambda: fault.recovered is not None or self.drained(), timeout_seconds)
        if fault.recovered is None and self.drained():
            fault.idle = True

    def scrape_metrics(self) -> None:
        """Keep every live worker's /metrics page, to search it for personal data."""
        for worker in self.alive_workers():
            port = worker.env.get("CRISIS_METRICS_PORT")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                                      timeout=5) as page:
                self.metrics_pages.append(page.read().decode("utf-8", "replace"))

    # -- the end ------------------------------------------------------------------------------

    async def _inbound(self) -> list[InboundRecord]:
        records = await read_topic(self.deployment.kafka_bootstrap, self.deployment.kafka_options,
                                   self.topic(topics.CALLS))
        return [InboundRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in records]

    async def _wait_complete(self, expected: Expected, deadline: float) -> bool:
        if not await _poll(lambda: self.accounted() >= expected.accounted, deadline - time.monotonic()):
            return False
        # Everything is stored; now the group must have committed the whole input (no replay pending).
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                lag = await committed_lag(self.deployment.kafka_bootstrap, self.deployment.kafka_options,
                                          self.settings.app_id, self.topic(topics.CALLS))
                if lag == 0:
                    return True
            await asyncio.sleep(1)
        return False

    async def finish(self, more_sources: Callable[[ChaosRun], Awaitable[Mapping[str, str]]] | None = None
                     ) -> RunOutcome:
        """Wait for the end, stop the workers, check everything; always cleans up what it started.

        ``more_sources`` adds outputs to search for personal data (reports, views), read before the
        database is dropped.
        """
        assert self.stream is not None and self.feeder is not None and self._feeding is not None
        deadline = self.started + self.timeout_seconds
        try:
            await asyncio.wait_for(self._feeding, max(1.0, deadline - time.monotonic()))
            inbound = await self._inbound()
            expected = await expected_outcome(inbound, self.settings, self.policy)
            complete = await self._wait_complete(expected, deadline)
            drained = time.monotonic()
            await self._stop_monitor()
            self.scrape_metrics()
            for worker in self.alive_workers():
                self.killed.add(id(worker))
                await asyncio.to_thread(worker.stop, 60)
            stored = await stored_state(self.admin_url)
            verdict = check_store(expected, stored)
            window = TimeWindow.around(datetime.now(UTC), self.settings.event_time_max_ahead_seconds,
                                       self.settings.earliest_event_time)
            check_accounted(verdict, inbound, stored, window)
            await self._check_topics(verdict, expected, stored)
            hits = await self._scan_personal_data(await more_sources(self) if more_sources else {})
            extra: dict[str, Any] = {}
            if complete and self.feeder.finished_at is not None:
                # From the last input acknowledged by the broker to the whole input stored and committed.
                extra["drain_seconds"] = round(max(0.0, drained - self.feeder.finished_at), 1)
            extra["fault_log"] = [
                {"fault": f.kind, "outage_seconds": None if f.outage_seconds is None else round(f.outage_seconds, 1),
                 "recovery_seconds": None if f.recovery_seconds is None else round(f.recovery_seconds, 1),
                 **({"idle": True} if f.idle else {})} for f in self.faults]
            if self.feeder.resent:
                extra["input_records_resent"] = self.feeder.resent
            return RunOutcome(self.name, len(self.stream.events), len(inbound), self.faults, verdict, hits,
                              self.unplanned_exits, len(stored.dead_letters), time.monotonic() - self.started,
                              complete, extra, expected, stored, inbound, self.stream)
        finally:
            await self.close()

    async def _check_topics(self, verdict: Verdict, expected: Expected, stored: StoredState) -> None:
        by_topic = stored_ids_by_topic(expected, stored)
        for name in (*PARTNER_TOPICS, topics.DEADLETTER):
            topic = self.topic(name)
            records = await read_topic(self.deployment.kafka_bootstrap, self.deployment.kafka_options, topic)
            check_topic(verdict, name, [record.value for record in records if record.value is not None],
                        by_topic.get(topic, set()))

    def scanner(self) -> PersonalDataScanner:
        assert self.stream is not None
        return PersonalDataScanner(self.stream.phones, self.stream.free_texts)

    async def _scan_personal_data(self, extra_sources: Mapping[str, str]) -> list[Hit]:
        scanner = self.scanner()
        hits: list[Hit] = []
        for name in PARTNER_TOPICS:
            records = await read_topic(self.deployment.kafka_bootstrap, self.deployment.kafka_options, self.topic(name))
            for record in records:
                hits += scanner.scan_bytes(f"{name}@{record.partition}:{record.offset}", record.value or b"")
                hits += scanner.scan_bytes(f"{name}@{record.partition}:{record.offset} key", record.key or b"")
        for index, worker in enumerate(self.workers):
            if worker.log_path.exists():
                hits += scanner.scan(f"worker {index} log", worker.log_path.read_text(errors="replace"))
        for index, page in enumerate(self.metrics_pages):
            hits += scanner.scan(f"/metrics page {index}", page)
        for source, text in extra_sources.items():
            hits += scanner.scan(source, text)
        return hits

    async def _stop_monitor(self) -> None:
        self._mark_recoveries()
        if self._monitoring is not None and not self._monitoring.done():
            self._monitoring.cancel()
            with contextlib.suppress(BaseException):
                await self._monitoring

    async def close(self) -> None:
        """Stop everything this run started and drop its database."""
        await self._stop_monitor()
        if self._feeding is not None and not self._feeding.done():
            self._feeding.cancel()
            with contextlib.suppress(BaseException):
                await self._feeding
        for worker in self.workers:
            worker.kill()
        with contextlib.suppress(Exception):
            await drop_database(self.deployment.admin_url("postgres"), self.database)
