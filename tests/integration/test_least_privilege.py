"""Least privilege in Postgres (migration 005): what each role may do, on a real server.

The worker's login (a member of ``crisis_worker``) runs the pipeline's own writes and nothing else:
no DDL, no DELETE, no other schema, no temporary tables, no migration. Reports read views without
personal data; the override audit is for auditors; ``crisis purge`` needs only its column grants.
(The fault-injection suite also runs every worker under such a login, on TCP with a password.)
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from crisis.report import ReportRequest, gather
from domain.policy import load_policy
from sinks import outcome_queries
from sinks.migrate import MigrationPrivilegeError, migrate
from sinks.postgres import PostgresStore
from sinks.retention import purge_personal_data
from sinks.roles import ensure_login
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import ListPublisher

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def as_user(url: str, user: str, password: str) -> str:
    """The same database and server, logged in as ``user``."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(user)}:{quote(password)}@{rest.split('@', 1)[1]}"


async def login(database_url: str, group: str) -> str:
    user = f"t_{group}_{secrets.token_hex(3)}"
    password = secrets.token_hex(8)
    await ensure_login(database_url, user, password, group)
    return as_user(database_url, user, password)


async def refused(url: str, sql: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    except asyncpg.InsufficientPrivilegeError:
        return True
    finally:
        await conn.close()
    return False


def records(call_received_factory) -> list[InboundRecord]:  # type: ignore[no-untyped-def]
    call = call_received_factory(call_id="lp-1", event_id="lp-1-e", occurred_at=T0.isoformat(),
                                 person_in_crisis_is_caller=False, caller_phone="+13145550142")
    override = {"type": "triage.overridden", "event_id": "lp-1-o", "call_id": "lp-1",
                "occurred_at": (T0 + timedelta(minutes=1)).isoformat(), "route": "emergency",
                "overridden_by": "dispatcher-3", "reason": "Caller Quinta Brightwater, 17 Larkspur Lane"}
    arrival = {"type": "unit.arrived", "event_id": "lp-1-a", "call_id": "lp-1",
               "occurred_at": (T0 + timedelta(minutes=2)).isoformat(), "unit_id": "P1", "unit_type": "police"}
    values = [json.dumps(call).encode(), json.dumps(override).encode(), json.dumps(arrival).encode(), b"{nope"]
    return [InboundRecord(topics.CALLS, 0, offset, b"lp-1", value) for offset, value in enumerate(values)]


async def run_pipeline_as(url: str, batch: list[InboundRecord]) -> ListPublisher:
    store = await PostgresStore.connect(url)
    publisher = ListPublisher()
    try:
        pipeline = CallPipeline(Settings(timer_clock="event", pseudonym_key="k"), load_policy(), store, publisher,
                                PipelineMetrics(CollectorRegistry()), clock=lambda: T0 + timedelta(days=1))
        await pipeline.handle(batch)
    finally:
        await store.close()
    return publisher


async def test_the_worker_role_writes_its_tables_and_nothing_else(database_url, call_received_factory):
    worker = await login(database_url, "crisis_worker")
    # The pipeline's whole batch path, as the worker: calls, decisions, overrides, timers, dead letters.
    publisher = await run_pipeline_as(worker, records(call_received_factory))
    assert {m.topic for m in publisher.messages} == {topics.TRIAGE, topics.DEADLETTER}
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM triage_decisions") == 2
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 1
        await conn.execute("CREATE SCHEMA other; CREATE TABLE other.secrets (x int)")
    finally:
        await conn.close()
    assert await migrate(worker) == [], "an up-to-date database needs no privilege to check"
    for sql in ("CREATE TABLE mine (x int)", "CREATE TEMP TABLE scratch (x int)", "DROP TABLE calls",
                "ALTER TABLE calls ADD COLUMN x int", "DELETE FROM calls", "TRUNCATE dead_letters",
                "UPDATE calls SET district = 'x'", "UPDATE triage_decisions SET route = 'emergency'",
                "SELECT * FROM other.secrets", "CREATE SCHEMA mine", "CREATE ROLE intruder",
                "GRANT crisis_auditor TO CURRENT_USER", "SELECT * FROM override_audit"):
        assert await refused(worker, sql), f"the worker's role may run: {sql}"


async def test_a_pending_migration_stops_the_worker_role_with_a_clear_error(database_url):
    worker = await login(database_url, "crisis_worker")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
    finally:
        await conn.close()
    with pytest.raises(MigrationPrivilegeError, match="pending and this database role may not apply them"):
        await migrate(worker)


async def test_reports_read_views_without_personal_data_and_auditors_read_overrides(database_url,
                                                                                    call_received_factory):
    await run_pipeline_as(database_url, records(call_received_factory))
    reader = await login(database_url, "crisis_reader")
    for sql in ("SELECT * FROM calls", "SELECT caller_phone FROM calls", "SELECT * FROM triage_decisions",
                "SELECT * FROM dead_letters", "SELECT * FROM override_audit", "INSERT INTO calls DEFAULT VALUES"):
        assert await refused(reader, sql), f"the reader's role may run: {sql}"
    conn = await asyncpg.connect(reader)
    try:
        rows = [dict(r) for r in await conn.fetch("SELECT * FROM report_calls")]
        decisions = [dict(r) for r in await conn.fetch("SELECT * FROM report_decisions ORDER BY decided_at")]
    finally:
        await conn.close()
    assert len(rows) == 1 and "caller_phone" not in rows[0] and rows[0]["person_ref"]
    assert [d["type"] for d in decisions] == ["triage.decided", "triage.overridden"]
    assert "override_reason" not in decisions[1] and decisions[1]["overridden_by"] == "dispatcher-3"
    # `crisis report` as the reader: the outcome aggregates, per-call facts, and its own audit row.
    request = ReportRequest(T0.date(), T0.date(), "district", "json", None, "analyst-1", 10)
    run_id = await outcome_queries.start_report_run(reader, {
        "operator": "analyst-1", "os_user": "analyst", "started_at": T0, "from_day": T0.date(), "to_day": T0.date(),
        "by": "district", "format": "json", "out_path": None})
    report = await gather(reader, request, ZoneInfo("America/Chicago"), lambda _: None)
    await outcome_queries.finish_report_run(reader, run_id, "ok", T0, report.cells, len(report.suppressed))
    assert report.cells > 0
    auditor = await login(database_url, "crisis_auditor")
    conn = await asyncpg.connect(auditor)
    try:
        audit = [dict(r) for r in await conn.fetch("SELECT * FROM override_audit")]
    finally:
        await conn.close()
    assert audit == [{**audit[0], "outcome": "applied", "call_id": "lp-1", "overridden_by": "dispatcher-3",
                      "from_route": "co_responder", "to_route": "emergency",
                      "reason": "Caller Quinta Brightwater, 17 Larkspur Lane"}]
    conn = await asyncpg.connect(auditor)
    try:
        assert [r["operator"] for r in await conn.fetch("SELECT operator FROM report_runs")] == ["analyst-1"]
    finally:
        await conn.close()


async def test_purge_blanks_personal_data_once_keeps_pseudonyms_and_open_followups(database_url,
                                                                                 call_received_factory):
    await run_pipeline_as(database_url, records(call_received_factory))
    conn = await asyncpg.connect(database_url)
    try:
        # A second, recent call, and a third whose follow-up is still open (a clinician will call back).
        await conn.execute(
            "INSERT INTO calls SELECT 'lp-2', 'lp-2-e', now(), center_id, nature_code, mpds_code, concerns,"
            " safety_flags, person_in_crisis_is_caller, juvenile, district, '+13145550143', 'ref2' FROM calls;"
            "INSERT INTO calls SELECT 'lp-3', 'lp-3-e', occurred_at, center_id, nature_code, mpds_code, concerns,"
            " safety_flags, person_in_crisis_is_caller, juvenile, district, '+13145550144', 'ref3'"
            " FROM calls WHERE call_id = 'lp-1';"
            "INSERT INTO timers (kind, call_id, seq, partition, state, next_deadline_at)"
            " VALUES ('followup', 'lp-3', 0, 0, '{}', now() + interval '1 day')")
        person_ref = await conn.fetchval("SELECT person_ref FROM calls WHERE call_id = 'lp-1'")
    finally:
        await conn.close()
    retention = await login(database_url, "crisis_retention")
    now = datetime.now(UTC)
    first = await purge_personal_data(retention, 90, 30, now + timedelta(days=40))
    assert first.as_dict() == {"caller_phones": 1, "override_reasons": 1, "dead_letter_originals": 1,
                               "phones_kept_for_open_followups": 1}
    again = await purge_personal_data(retention, 90, 30, now + timedelta(days=40))
    assert (again.caller_phones, again.override_reasons, again.dead_letter_originals) == (0, 0, 0)
    conn = await asyncpg.connect(database_url)
    try:
        phones = {r["call_id"]: (r["caller_phone"], r["person_ref"], r["phone_purged_at"] is not None)
                  for r in await conn.fetch("SELECT call_id, caller_phone, person_ref, phone_purged_at FROM calls")}
        letter = await conn.fetchrow("SELECT original_value, original_key, reason, error FROM dead_letters")
        reason = await conn.fetchval("SELECT override_reason FROM triage_decisions WHERE type = 'triage.overridden'")
    finally:
        await conn.close()
    assert phones == {"lp-1": (None, person_ref, True), "lp-2": ("+13145550143", "ref2", False),
                      "lp-3": ("+13145550144", "ref3", False)}
    assert bytes(letter["original_value"]) == b"" and letter["original_key"] is None and letter["reason"]
    assert reason is None
    assert await refused(retention, "SELECT district FROM calls"), "retention reads only what it blanks"
    assert await refused(retention, "DELETE FROM calls")


def test_crisis_purge_command_prints_what_it_blanked(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CRISIS_PII_RETENTION_DAYS", "90")
    from crisis.cli import app

    result = CliRunner().invoke(app, ["purge", "--dead-letter-days", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"caller_phones": 0, "override_reasons": 0, "dead_letter_originals": 0,
                                         "phones_kept_for_open_followups": 0, "phone_retention_days": 90.0,
                                         "dead_letter_retention_days": 0.0}
