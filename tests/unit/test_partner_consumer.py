"""examples/partner_consumer.py without a broker: its topic names are ours, its memory of event ids is bounded,
and every event type we publish gets a readable line (the run against Kafka: tests/integration)."""

from __future__ import annotations

import importlib.util
import json
import ssl
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest
from pydantic import BaseModel

from crisis.services import REPO_ROOT
from schemas.calls import Linkage
from schemas.followups import FOLLOWUP_EVENT_TYPES, Contact, FollowupEvent
from schemas.sla import Response, SlaEvent
from schemas.triage import Route, TriageDecision
from streams import topics
from streams.metrics import SLA_EVENT_TYPES

AT = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """The example as a module (examples/ is not a package: partners copy the file)."""
    spec = importlib.util.spec_from_file_location("partner_consumer", REPO_ROOT / "examples" / "partner_consumer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wire(event: BaseModel) -> dict[str, object]:
    """An event as the worker publishes it."""
    return dict(json.loads(event.model_dump_json()))


def test_the_example_reads_our_partner_topics(example):
    assert example.PARTNER_TOPICS == (topics.TRIAGE, topics.SLA, topics.FOLLOWUPS)


def test_seen_ids_forget_the_oldest_beyond_their_capacity(example):
    seen = example.SeenIds(2)
    assert seen.first_time("a") and seen.first_time("b")
    assert not seen.first_time("a")  # a duplicate, and now the most recent
    assert seen.first_time("c")  # "b" is forgotten
    assert not seen.first_time("a") and not seen.first_time("c")
    assert seen.first_time("b")


def test_connection_settings_are_in_one_place(example):
    assert example.connection_settings("kafka:9092", {}) == {"bootstrap_servers": "kafka:9092",
                                                             "security_protocol": "PLAINTEXT"}


def test_connection_settings_log_in_with_the_partners_own_user_over_tls(example):
    settings = example.connection_settings("kafka-1:9094", {
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_USERNAME": "county-mh", "KAFKA_SASL_PASSWORD": "pw"})
    context = settings.pop("ssl_context")
    assert settings == {"bootstrap_servers": "kafka-1:9094", "security_protocol": "SASL_SSL",
                        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "county-mh",
                        "sasl_plain_password": "pw"}
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def _followup(kind: str) -> FollowupEvent:
    return FollowupEvent(
        type=kind, event_id=f"e-{kind}", call_id="stl-911:1", occurred_at=AT, contact=Contact.DIVERSION_LINE,
        contact_ended_at=AT, attempts_made=3,
        attempt_number=2 if kind in ("followup.due", "followup.overdue") else None,
        due_at=AT + timedelta(days=1) if kind in ("followup.due", "followup.overdue") else None,
        linkage=Linkage.PEER_SUPPORT if kind == "followup.completed" else None,
        days_from_contact=2.5 if kind == "followup.completed" else None, district="district-2")


def _sla(kind: str) -> SlaEvent:
    arrived = kind in ("sla.met", "sla.late_arrival")
    return SlaEvent(type=kind, event_id=f"e-{kind}", call_id="stl-911:1", response=Response.SECOND,
                    requested_at=AT, deadline_at=AT + timedelta(minutes=15), occurred_at=AT + timedelta(minutes=9),
                    arrival_seconds=540.0 if arrived else None, district="district-2")


def _decision(overridden: bool) -> TriageDecision:
    return TriageDecision(
        type="triage.overridden" if overridden else "triage.decided", event_id="e", call_id="stl-911:1",
        source_event_id="s", decided_at=AT, route=Route.CO_RESPONDER, reasons=("weapon_present",),
        policy_name="default", policy_version="7", second_response_requested=not overridden,
        safety_flags=("weapon_present",), previous_route=Route.EMERGENCY if overridden else None,
        overridden_by="dispatcher-1" if overridden else None, approved_by="sup-1" if overridden else None,
        approved_by_role="supervisor" if overridden else None)


@pytest.mark.parametrize(("topic", "event", "meaning"), [
    (topics.TRIAGE, _decision(False), "route co_responder, co-responder team requested as second response; "
                                      "reasons weapon_present; safety flags weapon_present; policy default 7"),
    (topics.TRIAGE, _decision(True), "override emergency -> co_responder by dispatcher-1 approved by sup-1 "
                                     "(supervisor)"),
    *[(topics.SLA, _sla(kind), "second response") for kind in SLA_EVENT_TYPES],
    *[(topics.FOLLOWUPS, _followup(kind), "after diversion_line contact") for kind in FOLLOWUP_EVENT_TYPES],
])
def test_every_event_type_gets_a_readable_line(example, topic, event, meaning):
    wire = _wire(event)
    line = example.event_line("t1." + topic, wire, prefix="t1.")
    assert f"{wire['type']} " in line and " stl-911:1 " in line and meaning in line, line
    assert "None" not in line, line
    assert "\n" not in line
