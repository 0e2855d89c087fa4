"""Shared fixtures. Real services are started once per session; each test gets its own database,
topic prefix and consumer group, so tests never see each other's data."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from crisis.services import (
    ApacheKafkaBroker,
    EmbeddedPostgres,
    WorkerProcess,
    create_database,
    drop_database,
    free_port,
)
from sinks.migrate import migrate
from streams.config import Settings
from streams.topics import ensure_topics


@pytest.fixture(scope="session")
def kafka() -> Iterator[ApacheKafkaBroker]:
    """Real Apache Kafka 4.x (KRaft), jars fetched by Maven on first use."""
    broker = ApacheKafkaBroker().start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """$DATABASE_URL's server when given (its database is used to create test databases), else embedded."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    server = EmbeddedPostgres().start()
    yield server.url("postgres")
    server.stop()


def with_database(admin_url: str, name: str) -> str:
    prefix, _, query = admin_url.partition("?")
    base = prefix.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
async def database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"crisis_test_{uuid.uuid4().hex[:10]}"
    await create_database(postgres_admin_url, name)
    url = with_database(postgres_admin_url, name)
    await migrate(url)
    yield url
    await drop_database(postgres_admin_url, name)


@pytest.fixture
async def database_url_at_002(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh database migrated only up to 002: the schema before the one timer table."""
    name = f"crisis_test_{uuid.uuid4().hex[:10]}"
    await create_database(postgres_admin_url, name)
    url = with_database(postgres_admin_url, name)
    await migrate(url, up_to=2)
    yield url
    await drop_database(postgres_admin_url, name)


@dataclass
class PipelineEnv:
    """One isolated pipeline deployment: its topics, consumer group and database."""

    settings: Settings
    workers: list[WorkerProcess]

    def worker(self, **overrides: str) -> WorkerProcess:
        env = {**self.settings.as_env(), "CRISIS_METRICS_PORT": str(free_port()), **overrides}
        process = WorkerProcess(env, name="test-worker").start()
        self.workers.append(process)
        return process

    def topic(self, name: str) -> str:
        return self.settings.topic(name)


@pytest.fixture
async def pipeline_env_factory(
    kafka: ApacheKafkaBroker, postgres_admin_url: str
) -> AsyncIterator[Callable[[], Awaitable[PipelineEnv]]]:
    """Makes isolated deployments (own database, topics, consumer group); cleans them all up."""
    made: list[tuple[PipelineEnv, str]] = []

    async def make() -> PipelineEnv:
        run = uuid.uuid4().hex[:8]
        name = f"crisis_test_{run}"
        await create_database(postgres_admin_url, name)
        url = with_database(postgres_admin_url, name)
        await migrate(url)
        settings = Settings(kafka_bootstrap=kafka.bootstrap, database_url=url, topic_prefix=f"t{run}.",
                            app_id=f"crisis-test-{run}", partitions=4, pseudonym_key=secrets.token_hex(16),
                            broker_session_timeout_seconds=6.0, timer_tick_seconds=0.5)
        await ensure_topics(settings)
        env = PipelineEnv(settings, [])
        made.append((env, name))
        return env

    yield make
    for env, name in made:
        for worker in env.workers:
            worker.kill()
        await drop_database(postgres_admin_url, name)


@pytest.fixture
async def pipeline_env(pipeline_env_factory: Callable[[], Awaitable[PipelineEnv]]) -> PipelineEnv:
    return await pipeline_env_factory()


@pytest.fixture
def call_received_factory() -> Callable[..., dict[str, Any]]:
    """A valid ``call.received`` payload with explicit defaults; override any field by keyword."""
    counter = iter(range(1_000_000))

    def make(**overrides: Any) -> dict[str, Any]:
        n = next(counter)
        body: dict[str, Any] = {
            "type": "call.received",
            "event_id": f"evt-{n}",
            "call_id": f"call-{n}",
            "occurred_at": datetime(2026, 11, 2, 15, 0, tzinfo=UTC).isoformat(),
            "center_id": "stl-911",
            "nature_code": "MENTAL",
            "mpds_code": "25-A-1",
            "concerns": ["mental_health"],
            "weapon_present": False,
            "violence_or_threat_to_others": False,
            "medical_emergency": False,
            "imminent_risk_to_self": False,
            "crime_in_progress": False,
            "caller_requests_police": False,
            "person_in_crisis_is_caller": True,
            "juvenile": False,
            "district": "district-1",
            "caller_phone": "+13145550100",
        }
        body.update(overrides)
        return body

    return make


async def wait_until(check: Callable[[], Any], timeout_seconds: float = 60, interval: float = 0.25) -> Any:
    """Poll an async check until it returns something truthy; fail with its last value otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout_seconds} s (last value: {last!r})")
