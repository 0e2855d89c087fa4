"""Scenario tests written once, run on two back-ends: the in-memory store and the real stack.

``backend`` is parametrised: ``memory`` runs ``CallPipeline`` on ``InMemoryStore`` in-process (fast);
``kafka`` publishes to real Apache Kafka, read by a real ``crisis worker`` process writing to real
PostgreSQL (true). Both judge deadlines by event time with no lateness, so a scenario moves time by
sending events. Each scenario gets a partition of its own: its event time is its own, and one worker
serves every scenario of a module.
"""

from __future__ import annotations

import itertools
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
from prometheus_client import CollectorRegistry

from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from crisis.services import ApacheKafkaBroker, WorkerProcess, create_database, drop_database, free_port
from domain.policy import load_policy
from domain.timers.followup import Followup
from sinks.base import InMemoryStore
from sinks.migrate import migrate
from sinks.queries import followups, stored_events
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import ListPublisher
from streams.topics import ensure_topics
from tests.conftest import wait_until, with_database
from tests.integration.kafka_io import publish, read_all

PARTITIONS = 12  # one per scenario of a module: each has its own event time


class Backend(Protocol):
    name: str

    async def send(self, *events: dict[str, Any]) -> None:
        """Send events of this scenario (all on its partition) and return once they are processed."""

    async def published(self, topic: str, call_id: str) -> list[dict[str, Any]]:
        """What partners received on ``topic`` for the call, deduplicated by event id, in order."""

    async def followup(self, call_id: str) -> dict[str, Any] | None:
        """The call's follow-up as stored: status, attempts_made, linkage, contact, person_ref."""


@dataclass
class MemoryBackend:
    partition: int
    name: str = "memory"
    store: InMemoryStore = field(default_factory=InMemoryStore)
    publisher: ListPublisher = field(default_factory=ListPublisher)
    offset: int = 0

    def __post_init__(self) -> None:
        settings = Settings(timer_clock="event", timer_lateness_seconds=0, pseudonym_key="scenario-key")
        self.pipeline = CallPipeline(settings, load_policy(), self.store, self.publisher,
                                     PipelineMetrics(CollectorRegistry()))

    async def send(self, *events: dict[str, Any]) -> None:
        records = []
        for event in events:
            records.append(InboundRecord(topics.CALLS, self.partition, self.offset, event["call_id"].encode(),
                                         json.dumps(event).encode()))
            self.offset += 1
        await self.pipeline.handle(records)

    async def published(self, topic: str, call_id: str) -> list[dict[str, Any]]:
        return [json.loads(m.value) for m in self.publisher.on(topic) if m.key == call_id.encode()]

    async def followup(self, call_id: str) -> dict[str, Any] | None:
        state = self.store.timer_states("followup").get(call_id)
        if state is None:
            return None
        timer = Followup(load_policy()).decode(state)
        return {"status": timer.status, "attempts_made": len(timer.attempts), "contact": timer.contact.value,
                "linkage": timer.linkage.value if timer.linkage else None, "person_ref": timer.person_ref}


@dataclass
class KafkaBackend:
    settings: Settings
    partition: int
    name: str = "kafka"
    sent_calls: set[str] = field(default_factory=set)
    stored_expected: int = 0

    async def send(self, *events: dict[str, Any]) -> None:
        await publish(self.settings.kafka_bootstrap, self.settings.topic(topics.CALLS),
                      [(e["call_id"], json.dumps(e).encode()) for e in events], partition=self.partition)
        self.stored_expected += len(events)  # every event here is a call or a lifecycle event
        prefix = f"p{self.partition}-"

        async def processed() -> bool:
            return await stored_events(self.settings.database_url, prefix) >= self.stored_expected

        await wait_until(processed, 60)

    async def published(self, topic: str, call_id: str) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for record in await read_all(self.settings.kafka_bootstrap, self.settings.topic(topic)):
            if record.key == call_id.encode():
                event = json.loads(record.value)
                seen.setdefault(event["event_id"], event)
        return list(seen.values())

    async def followup(self, call_id: str) -> dict[str, Any] | None:
        row = (await followups(self.settings.database_url, [call_id])).get(call_id)
        if row is None:
            return None
        return {key: row[key] for key in ("status", "attempts_made", "contact", "linkage", "person_ref")}


@dataclass
class KafkaDeployment:
    settings: Settings
    partitions: itertools.count[int] = field(default_factory=itertools.count)


@pytest.fixture(scope="module")
async def kafka_deployment(kafka: ApacheKafkaBroker, postgres_admin_url: str) -> AsyncIterator[KafkaDeployment]:
    """One deployment (database, topics, a worker judging deadlines by event time) for a module's scenarios."""
    run = uuid.uuid4().hex[:8]
    name = f"crisis_scenarios_{run}"
    await create_database(postgres_admin_url, name)
    url = with_database(postgres_admin_url, name)
    await migrate(url)
    settings = Settings(kafka_bootstrap=kafka.bootstrap, database_url=url, topic_prefix=f"s{run}.",
                        app_id=f"crisis-scenarios-{run}", partitions=PARTITIONS, pseudonym_key=secrets.token_hex(16),
                        broker_session_timeout_seconds=6.0, timer_clock="event", timer_lateness_seconds=0)
    await ensure_topics(settings)
    worker = WorkerProcess({**settings.as_env(), "CRISIS_METRICS_PORT": str(free_port())}, name="scenario-worker")
    worker.start()
    yield KafkaDeployment(settings)
    worker.kill()
    await drop_database(postgres_admin_url, name)


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return MemoryBackend(0)
    deployment: KafkaDeployment = request.getfixturevalue("kafka_deployment")
    partition = next(deployment.partitions)
    assert partition < PARTITIONS, "more kafka scenarios in this module than partitions: raise PARTITIONS"
    return KafkaBackend(deployment.settings, partition)


ScenarioIds = Callable[[str], str]


@pytest.fixture
def ids(backend: Backend) -> ScenarioIds:
    """Call ids of this scenario: prefixed by its partition, so its rows and waits are its own."""
    partition = backend.partition  # type: ignore[attr-defined]
    return lambda name: f"p{partition}-{name}"

