"""Every record we produce is a CloudEvent (Kafka binding, binary mode), and dead letters carry Kafka
Connect-style headers: checked on the raw records read back from Apache Kafka."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sinks.queries import stored_call_ids, timer_events_of
from streams import topics
from tests.conftest import wait_until
from tests.integration.kafka_io import as_records, publish, read_all

pytestmark = pytest.mark.integration
PHONE = "+13145550123"


async def test_records_carry_cloudevents_headers_and_dead_letters_connect_headers(pipeline_env,
                                                                                   call_received_factory):
    env, bootstrap, db = pipeline_env, pipeline_env.settings.kafka_bootstrap, pipeline_env.settings.database_url
    env.worker()
    now = datetime.now(UTC)
    call = call_received_factory(call_id="ce-1", event_id="ce-1-r", occurred_at=now.isoformat(),
                                 person_in_crisis_is_caller=False, caller_phone=PHONE)
    arrival = {"type": "unit.arrived", "event_id": "ce-1-a", "call_id": "ce-1",
               "occurred_at": (now + timedelta(seconds=1)).isoformat(), "unit_id": "CRU1", "unit_type": "co_responder"}
    broken = ("ce-2", json.dumps({**call_received_factory(call_id="ce-2"), "district": 7}).encode())
    await publish(bootstrap, env.topic(topics.CALLS), [*as_records([call, arrival]), broken])
    await wait_until(lambda: _stored(db), 60)
    await wait_until(lambda: _met(db), 30)

    for topic in (topics.TRIAGE, topics.SLA, topics.DEADLETTER):
        records = await wait_until(lambda topic=topic: _records(bootstrap, env.topic(topic)), 30)
        for record in records:
            headers = {name: value.decode() for name, value in record.headers}
            body = json.loads(record.value)
            assert headers["ce_specversion"] == "1.0" and headers["content-type"] == "application/json"
            assert headers["ce_id"] == body["event_id"]
            assert headers["ce_source"] == "/crisis-pipeline"
            assert datetime.fromisoformat(headers["ce_time"]).tzinfo is not None
            assert "5550123" not in "".join(headers.values()), "no personal data in any header"
            if topic == topics.DEADLETTER:
                assert headers["ce_type"] == "crisis.deadletter" and headers["ce_subject"] == "ce-2"
                assert headers["__connect.errors.topic"] == env.topic(topics.CALLS)
                assert int(headers["__connect.errors.partition"]) == body["source_partition"]
                assert int(headers["__connect.errors.offset"]) == body["source_offset"]
                assert headers["__connect.errors.stage"] == "decode"
                assert headers["__connect.errors.exception.class.name"] == "ValidationError"
                assert "district" in headers["__connect.errors.exception.message"]
                assert headers["crisis.deadletter.reason"] == "invalid_field"
            else:
                assert headers["ce_type"] == body["type"] and headers["ce_subject"] == "ce-1"


async def _stored(db: str) -> bool:
    return await stored_call_ids(db, ["ce-1"]) == {"ce-1"}


async def _met(db: str) -> bool:
    return await timer_events_of(db, ["ce-1"]) == [("ce-1", "sla.met")]


async def _records(bootstrap: str, topic: str) -> list | None:
    records = await read_all(bootstrap, topic)
    return records or None
