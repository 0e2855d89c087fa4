"""Migration 003 moves SLA timers onto the one timer table with running timers preserved: a database
holding running, warned, fired and met timers in the old schema is migrated, and they fire exactly as
the old code would have (same events, same ids), once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from domain.policy import load_policy
from domain.triage import deterministic_id
from sinks.migrate import migrate
from sinks.postgres import PostgresStore
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import ListPublisher

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
OLD_COLUMNS = ("call_id, response, requested_at, warning_at, breach_at, partition, district, warned, breached,"
               " dispatched_at, arrived_at, closed_at, next_deadline_at")


def old_id(kind: str, call_id: str, response: str, requested_at: datetime) -> str:
    """The id the code before migration 003 gave an SLA event (domain/sla.py at commit d4c3cba)."""
    return deterministic_id(kind, call_id, response, requested_at.astimezone(UTC).isoformat())


async def test_running_warned_and_fired_timers_survive_the_migration(database_url_at_002):
    db = database_url_at_002
    w, b = timedelta(minutes=15), timedelta(minutes=20)
    running = ("running", "first", T0, T0 + w, T0 + b, 1, "district-1", False, False, T0, None, None, T0 + w)
    warned = ("warned", "second", T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=15), 2, "district-2",
              True, False, None, None, None, T0 + timedelta(minutes=15))
    fired = ("fired", "first", T0, T0 + w, T0 + b, 3, None, True, True, None, None, None, None)
    met = ("met", "first", T0, T0 + w, T0 + b, 0, "district-4", False, False, T0, T0 + timedelta(minutes=9), None,
           None)
    awaited = ("awaited", "first", T0, T0 + w, T0 + b, 0, "district-4", False, False, None, None, None, T0 + w)
    conn = await asyncpg.connect(db)
    try:
        await conn.executemany(f"INSERT INTO sla_timers ({OLD_COLUMNS}) VALUES"
                               " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)", [running, warned, fired, met, awaited])
        old_events = [("sla.warning", "warned", "second", T0 + timedelta(minutes=10)),
                      ("sla.warning", "fired", "first", T0 + w), ("sla.breached", "fired", "first", T0 + b)]
        await conn.executemany(
            "INSERT INTO sla_events (event_id, type, call_id, response, requested_at, deadline_at, occurred_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $6)",
            [(old_id(kind, call, response, T0), kind, call, response, T0, at)
             for kind, call, response, at in old_events])
    finally:
        await conn.close()

    assert (await migrate(db))[0] == "003_timers_for_every_kind.sql"

    store = await PostgresStore.connect(db)
    publisher = ListPublisher()
    now = T0 + timedelta(hours=1)
    pipeline = CallPipeline(Settings(timer_clock="wall", timer_lateness_seconds=0, pseudonym_key="k"), load_policy(),
                            store, publisher, PipelineMetrics(CollectorRegistry()), clock=lambda: now)
    try:
        # A team arrives for the running timer nobody dispatched yet: applied to the migrated state.
        arrival = {"type": "unit.arrived", "event_id": "arr-awaited", "call_id": "awaited",
                   "occurred_at": (T0 + timedelta(minutes=12)).isoformat(), "unit_id": "CRU1",
                   "unit_type": "co_responder"}
        await pipeline.handle([InboundRecord(topics.CALLS, 0, 0, b"awaited", json.dumps(arrival).encode())])
        assert await pipeline.fire_due_by_wall_clock() == 3
        assert await pipeline.fire_due_by_wall_clock() == 0
        published = [json.loads(m.value) for m in publisher.on(topics.SLA)]
        fired_now = sorted((e["type"], e["call_id"], e["event_id"]) for e in published)
        assert fired_now == sorted([
            ("sla.met", "awaited", old_id("sla.met", "awaited", "first", T0)),
            ("sla.warning", "running", old_id("sla.warning", "running", "first", T0)),
            ("sla.breached", "running", old_id("sla.breached", "running", "first", T0)),
            ("sla.breached", "warned", old_id("sla.breached", "warned", "second", T0)),
        ])
        rows = await store.pool.fetch("SELECT call_id, type FROM sla_events ORDER BY call_id, type")
        assert [(r["call_id"], r["type"]) for r in rows] == [
            ("awaited", "sla.met"), ("fired", "sla.breached"), ("fired", "sla.warning"),
            ("running", "sla.breached"), ("running", "sla.warning"), ("warned", "sla.breached"),
            ("warned", "sla.warning")]
        timers = await store.pool.fetch("SELECT call_id, partition, dispatched_at, next_deadline_at FROM sla_timers"
                                        " ORDER BY call_id")
        assert [(t["call_id"], t["partition"], t["next_deadline_at"]) for t in timers] == [
            ("awaited", 0, None), ("fired", 3, None), ("met", 0, None), ("running", 1, None), ("warned", 2, None)]
        assert timers[3]["dispatched_at"] == T0
    finally:
        await store.close()
