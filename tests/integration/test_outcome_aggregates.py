"""Outcome aggregates, one scenario run on both stores: the in-memory one and PostgreSQL (the batch
pipeline in-process, no broker), plus two concurrent writers on one database.

The month on real Kafka and workers is ``test_outcomes_month.py``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from crisis.services import create_database, drop_database
from domain.policy import load_policy
from sinks.base import InMemoryStore, Store
from sinks.migrate import migrate
from sinks.outcome_queries import daily_counts
from sinks.postgres import PostgresStore
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import ListPublisher
from tests.conftest import with_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)  # 09:00 in Chicago, Nov 3


class Outcomes:
    """A pipeline on one store, and its aggregates read back the same way for both stores."""

    def __init__(self, store: Store, database_url: str | None) -> None:
        self.store = store
        self.database_url = database_url
        self.publisher = ListPublisher()
        settings = Settings(timer_clock="event", timer_lateness_seconds=0)
        self.pipeline = CallPipeline(settings, load_policy(), store, self.publisher,
                                     PipelineMetrics(CollectorRegistry()), clock=lambda: T0 + timedelta(days=60))
        self.offset = 0

    async def send(self, *events: dict[str, Any]) -> None:
        records = []
        for event in events:
            records.append(InboundRecord(topics.CALLS, 0, self.offset, event["call_id"].encode(),
                                         json.dumps(event).encode()))
            self.offset += 1
        await self.pipeline.handle(records)

    async def daily(self) -> dict[tuple[Any, ...], int]:
        if isinstance(self.store, InMemoryStore):
            return {key: n for key, n in self.store.outcome_daily.items() if n}
        assert self.database_url is not None
        return await daily_counts(self.database_url)

    async def by_measure(self, day: date | None = None) -> Counter[str]:
        totals: Counter[str] = Counter()
        for key, n in (await self.daily()).items():
            if day is None or key[1] == day:
                totals[key[5]] += n
        return totals


@pytest.fixture(params=["memory", "postgres"])
async def outcomes(request: pytest.FixtureRequest, postgres_admin_url: str) -> AsyncIterator[Outcomes]:
    """The same scenario on the in-memory store and on a fresh PostgreSQL database."""
    if request.param == "memory":
        yield Outcomes(InMemoryStore(), None)
        return
    name = f"crisis_test_{uuid.uuid4().hex[:10]}"
    await create_database(postgres_admin_url, name)
    url = with_database(postgres_admin_url, name)
    await migrate(url)
    store = await PostgresStore.connect(url)
    yield Outcomes(store, url)
    await store.close()
    await drop_database(postgres_admin_url, name)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def event(kind: str, call_id: str, n: int, minutes: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": f"{call_id}-{n}", "call_id": call_id, "occurred_at": at(minutes), **fields}


def team(call_id: str, call_received_factory: Any, **overrides: Any) -> dict[str, Any]:
    """A call the rules send to the co-responder team (a third party calls)."""
    return call_received_factory(**{"call_id": call_id, "event_id": f"{call_id}-0", "occurred_at": at(0),
                                    "person_in_crisis_is_caller": False, **overrides})


async def test_funnel_outcomes_and_reasons_replays_and_a_late_arrival(outcomes, call_received_factory):
    served, unserved, line, away = "served", "closed-first", "line", "away"
    batch = [
        team(served, call_received_factory),
        team(unserved, call_received_factory),
        call_received_factory(call_id=line, event_id=f"{line}-0", occurred_at=at(0)),
        team(away, call_received_factory),
        event("unit.dispatched", served, 1, 2, unit_id="CRU1", unit_type="co_responder"),
        event("unit.arrived", served, 2, 9, unit_id="CRU1", unit_type="co_responder"),
        event("unit.dispatched", unserved, 1, 2, unit_id="CRU2", unit_type="co_responder"),
        event("triage.overridden", away, 1, 1, route="emergency", overridden_by="d1", reason="weapon seen"),
        event("call.closed", served, 3, 40, disposition="transported_to_crisis_center"),
        event("call.closed", unserved, 2, 30, disposition="cancelled"),
        event("call.closed", line, 1, 20, disposition="resolved_by_phone"),
        event("call.closed", away, 2, 45, disposition="arrested"),
    ]
    await outcomes.send(*batch)
    day = date(2026, 11, 3)
    counted = await outcomes.by_measure(day)
    assert counted["calls"] == counted["eligible"] == 4
    assert (counted["status:served"], counted["status:unserved"]) == (2, 2)
    assert counted["unserved:cancelled_before_arrival"] == counted["unserved:overridden_by_dispatcher"] == 1
    assert counted["resolved_without_field_unit"] == counted["transferred"] == 1
    assert counted["disposition:community_location_or_crisis_center"] == counted["disposition:arrested"] == 1
    assert (counted["team_requested"], counted["team_dispatched"], counted["team_arrived"]) == (3, 2, 1)
    assert counted["sla_met:first"] == 1
    before = await outcomes.daily()

    await outcomes.send(*batch)  # a replay changes nothing
    assert await outcomes.daily() == before

    # Days later the CAD delivers the arrival it had lost: the call's own day is revised.
    await outcomes.send(event("unit.arrived", unserved, 9, 14, unit_id="CRU2", unit_type="co_responder"))
    revised = await outcomes.by_measure(day)
    assert (revised["status:served"], revised["status:unserved"]) == (3, 1)
    assert revised["unserved:cancelled_before_arrival"] == 0 and revised["team_arrived"] == 2
    assert {key[1] for key in await outcomes.daily()} == {day}


async def test_two_writers_on_one_database_lose_no_increment(database_url, call_received_factory):
    """Two stores (two connection pools, as two workers) write calls of the same day, district and hour at
    once: every count must be the sum of both, as the in-memory store computes it."""
    stores = [await PostgresStore.connect(database_url, max_size=2) for _ in range(2)]
    writers = [Outcomes(store, database_url) for store in stores]
    reference = Outcomes(InMemoryStore(), None)
    batches: list[list[list[dict[str, Any]]]] = [[], []]
    for writer in range(2):
        for b in range(15):
            batch = []
            for n in range(8):
                call_id = f"w{writer}-b{b}-c{n}"
                batch.append(team(call_id, call_received_factory, occurred_at=at(n % 3)))
                batch.append(event("unit.arrived", call_id, 1, 9, unit_id="CRU1", unit_type="co_responder"))
                batch.append(event("call.closed", call_id, 2, 30, disposition="stabilized_on_scene"))
            batches[writer].append(batch)

    async def run(writer: int) -> None:
        for batch in batches[writer]:
            await writers[writer].send(*batch)

    try:
        await asyncio.gather(run(0), run(1))
    finally:
        for store in stores:
            await store.close()
    for writer in range(2):
        for batch in batches[writer]:
            await reference.send(*batch)
    assert await writers[0].daily() == await reference.daily()
    assert (await writers[0].by_measure())["calls"] == 240
    # Locks in one order: no deadlock was detected and retried away.
    for outcomes in writers:
        assert outcomes.pipeline.metrics.registry.get_sample_value("crisis_batch_retries_total",
                                                                   {"stage": "batch"}) == 0


async def test_crisis_report_command_writes_the_file_and_records_who_ran_it(database_url, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from crisis.cli import app
    from sinks.outcome_queries import report_runs

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CRISIS_OPERATOR", "program-manager")
    metrics = tmp_path / "report.prom"
    monkeypatch.setenv("CRISIS_REPORT_METRICS_FILE", str(metrics))
    out = tmp_path / "r.json"
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "report", "--from", "2026-11-01", "--to", "2026-11-30", "--by", "district", "--format", "json",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["from"] == "2026-11-01" and document["columns"] == ["all"]
    assert 'crisis_report_last_duration_seconds{format="json"}' in metrics.read_text()
    [run] = await report_runs(database_url)
    assert (run["operator"], run["format"], run["by"], run["status"]) == ("program-manager", "json", "district", "ok")
    assert run["out_path"] == str(out) and run["finished_at"] >= run["started_at"]

    refused = CliRunner().invoke(app, ["report", "--from", "2026-11-30", "--to", "2026-11-01"])
    assert refused.exit_code == 2 and "before" in refused.output
