"""No single record can halt the pipeline: each record that once froze a worker, kept as a regression test.

On the in-memory store; ``tests/integration/test_hostile_records.py`` sends the same records to a real
worker on Apache Kafka. Each test sends the hostile record in a batch with valid calls and checks
that the hostile one is dead-lettered (or stored) with a clear reason while the valid ones go on.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from agents.decoding import InboundRecord
from streams import topics
from tests.unit.test_pipeline import T0, Harness, arrival, at, tick


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def send_records(h: Harness, *records: tuple[bytes | None, bytes | None], partition: int = 0) -> None:
    batch = []
    for key, value in records:
        batch.append(InboundRecord(topics.CALLS, partition, h.offset, key, value))
        h.offset += 1
    await h.pipeline.handle(batch)


def reasons(h: Harness) -> list[str]:
    return [letter["reason"] for letter in h.published(topics.DEADLETTER)]


@pytest.mark.parametrize("key", [None, b"call-9"])
async def test_a_tombstone_is_dead_lettered_and_the_batch_goes_on(call_received_factory, key):
    h = Harness()
    await send_records(h, (key, None), (b"c1", raw(call_received_factory(call_id="c1"))))
    assert reasons(h) == ["tombstone"]
    assert set(h.store.calls) == {"c1"}
    assert h.metric("crisis_batch_retries_total", stage="batch") == 0


@pytest.mark.parametrize("moment", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"])
async def test_times_that_would_overflow_are_refused_as_implausible(call_received_factory, moment):
    h = Harness()
    await h.send(call_received_factory(call_id="bad", occurred_at=moment), call_received_factory(call_id="ok"))
    assert reasons(h) == ["implausible_time"]
    [letter] = h.published(topics.DEADLETTER)
    assert "out of range" in letter["error"] or "earliest" in letter["error"]
    assert set(h.store.calls) == {"ok"}


@pytest.mark.parametrize("kind", ["call.received", "unit.dispatched"])
async def test_a_year_one_event_on_a_fresh_partition_does_not_break_the_watermark(call_received_factory, kind):
    h = Harness()
    event = (call_received_factory(call_id="old", occurred_at="0001-01-01T00:00:00Z") if kind == "call.received"
             else {**tick(0, call_id="old"), "occurred_at": "0001-01-01T00:00:00Z"})
    await h.send(event, partition=3)
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False), partition=3)
    await h.send(tick(30), partition=3)
    assert reasons(h) == ["implausible_time"]
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.warning", "sla.breached"]


async def test_a_huge_key_gives_a_dead_letter_that_fits_one_kafka_message():
    h = Harness()
    key = b"k" * 600_000
    await send_records(h, (key, b'{"type": "nope"}'))
    [message] = h.publisher.on(topics.DEADLETTER)
    assert message.key is None and len(message.value) < 16_000
    letter = json.loads(message.value)
    assert letter["reason"] == "unknown_type" and letter["source_key"].endswith("(600000 bytes, cut)")
    [stored] = h.store.dead_letters.values()
    assert stored.original_key == key, "the table keeps every byte of the key"


async def test_a_year_9999_co_responder_call_is_only_dead_lettered_never_also_stored(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c9999", occurred_at="9999-12-31T23:00:00-05:00",
                                       person_in_crisis_is_caller=False))
    assert reasons(h) == ["implausible_time"]
    assert h.store.calls == {} and h.store.decisions == {} and h.store.timers == {}


async def test_a_far_future_call_cannot_poison_the_watermark(call_received_factory):
    """A call dated 2099 once moved its partition's event time, and on-time teams after it were breached."""
    h = Harness(now=T0 + timedelta(hours=1))
    await h.send(call_received_factory(call_id="future", occurred_at="2099-01-01T00:00:00Z"))
    for n in range(3):
        await h.send(call_received_factory(call_id=f"c{n}", person_in_crisis_is_caller=False),
                     arrival(f"c{n}", 10))
    assert reasons(h) == ["implausible_time"]
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.met"] * 3


async def test_a_cad_clock_a_few_hours_fast_cannot_breach_live_timers_early(call_received_factory):
    """Within the plausible window, the live watermark is still capped by the wall clock."""
    h = Harness(clock="wall", now=T0 + timedelta(minutes=1))
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False),
                 tick(6 * 60))  # an event 6 hours ahead of the wall clock: accepted, but it moves nothing
    assert reasons(h) == [] and h.published(topics.SLA) == []


@pytest.mark.parametrize(("change", "reason", "says"), [
    ({"occurred_at": 1793541600}, "invalid_field", "valid datetime"),
    ({"district": "north\u001b[31m"}, "invalid_field", "control character"),
    ({"district": "north\u202edrow"}, "invalid_field", "control character"),
    ({"center_id": "stl\u0000"}, "invalid_field", "control character"),
])
async def test_contract_gaps_are_closed(call_received_factory, change, reason, says):
    h = Harness()
    await h.send(call_received_factory(call_id="bad", **change), call_received_factory(call_id="ok"))
    [letter] = h.published(topics.DEADLETTER)
    assert (letter["reason"], says in letter["error"]) == (reason, True), letter["error"]
    assert "\u001b" not in letter["error"] and "\u0000" not in letter["error"]
    assert set(h.store.calls) == {"ok"}


async def test_a_key_given_twice_is_refused_so_no_parser_can_read_another_call(call_received_factory):
    h = Harness()
    body = raw(call_received_factory(call_id="c1", weapon_present=True))
    duplicated = body[:-1] + b', "weapon_present": false}'
    await send_records(h, (b"c1", duplicated))
    [letter] = h.published(topics.DEADLETTER)
    assert letter["reason"] == "duplicate_key" and "weapon_present" in letter["error"]
    assert h.store.calls == {}


async def test_the_literal_text_backslash_u0000_is_ordinary_text(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", district="district \\u0000 9"))
    assert reasons(h) == []
    assert h.store.calls["c1"].district == "district \\u0000 9"


async def test_a_concern_listed_twice_counts_once_as_the_published_schema_says(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", concerns=["mental_health"] * 9 + ["substance_use"]))
    assert reasons(h) == []
    assert h.store.calls["c1"].concerns == {"mental_health", "substance_use"}


# -- the failure rule -----------------------------------------------------------------------------


async def test_a_bug_in_the_rules_dead_letters_only_its_record(call_received_factory, monkeypatch):
    from domain import triage

    h = Harness()
    real = triage.decide_explained

    def decide(call, policy, key):
        if call.call_id == "boom":
            raise ZeroDivisionError("a rule divided by zero")
        return real(call, policy, key)

    monkeypatch.setattr("agents.handlers.decide_explained", decide)
    await h.send(call_received_factory(call_id="a"), call_received_factory(call_id="boom"),
                 call_received_factory(call_id="b"))
    [letter] = h.published(topics.DEADLETTER)
    assert letter["reason"] == "processing_error" and "ZeroDivisionError" in letter["error"]
    assert set(h.store.calls) == {"a", "b"} and len(h.store.decisions) == 2
    assert h.metric("crisis_batch_retries_total", stage="batch") == 0


async def test_transient_failures_are_retried_until_they_pass(call_received_factory, monkeypatch):
    h = Harness()
    monkeypatch.setattr("agents.failures.RETRY_DELAYS_SECONDS", (0,))
    real = h.publisher.publish
    failures = iter([KafkaConnectionError("broker gone"), asyncpg.CannotConnectNowError("starting up"),
                     TimeoutError("slow")])

    async def flaky(messages):
        for exc in failures:
            raise exc
        await real(messages)

    monkeypatch.setattr(h.publisher, "publish", flaky)
    await h.send(call_received_factory(call_id="c1"))
    assert len(h.publisher.on(topics.TRIAGE)) == 1 and reasons(h) == []
    assert h.metric("crisis_batch_retries_total", stage="batch") == 3


async def test_a_message_the_broker_refuses_for_good_is_dead_lettered_alone(call_received_factory, monkeypatch):
    h = Harness()
    real = h.publisher.publish

    async def refusing(messages):
        if any(m.key == b"huge" and m.topic == topics.TRIAGE for m in messages):
            raise MessageSizeTooLargeError()
        await real(messages)

    monkeypatch.setattr(h.publisher, "publish", refusing)
    await h.send(call_received_factory(call_id="a"), call_received_factory(call_id="huge"),
                 call_received_factory(call_id="b"))
    assert reasons(h) == ["unstorable"]
    assert {m.key for m in h.publisher.on(topics.TRIAGE)} == {b"a", b"b"}


async def test_metrics_that_fail_never_replay_a_stored_batch(call_received_factory, monkeypatch):
    h = Harness()

    def broken(*args, **kwargs):
        raise RuntimeError("a label went missing")

    monkeypatch.setattr("agents.batch_metrics._record_batch", broken)
    await h.send(call_received_factory(call_id="c1"))
    assert len(h.publisher.on(topics.TRIAGE)) == 1 and len(h.store.decisions) == 1
    assert h.metric("crisis_batch_retries_total", stage="batch") == 0


async def test_a_timer_whose_code_fails_stops_alone_and_the_event_is_still_stored(call_received_factory,
                                                                                  monkeypatch):
    from domain.timers import sla_arrival

    h = Harness()
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False),
                 call_received_factory(call_id="c2", person_in_crisis_is_caller=False))
    real = sla_arrival.record_arrival

    def record_arrival(timer, arrived_at):
        if timer.call_id == "c1":
            raise KeyError("unexpected state")
        return real(timer, arrived_at)

    monkeypatch.setattr(sla_arrival, "record_arrival", record_arrival)
    await h.send(arrival("c1", 5), arrival("c2", 6))
    assert reasons(h) == []
    assert {e.event_id for e in h.store.lifecycle.values()} == {arrival("c1", 5)["event_id"],
                                                                 arrival("c2", 6)["event_id"]}
    [failed] = [row for row in h.store.timers.values() if row.call_id == "c1"]
    assert failed.next_deadline_at is None and "KeyError" in (failed.failed_reason or "")
    assert [e["call_id"] for e in h.published(topics.SLA)] == ["c2"]
    assert h.metric("crisis_timer_failures_total", kind="sla_arrival") == 1
    await h.send(tick(60))  # the failed timer never fires
    assert [e["call_id"] for e in h.published(topics.SLA)] == ["c2"]


async def test_the_wall_clock_path_isolates_a_timer_it_cannot_publish(call_received_factory, monkeypatch):
    h = Harness(clock="wall", now=T0)
    await h.send(*[call_received_factory(call_id=f"c{n}", person_in_crisis_is_caller=False) for n in range(4)])
    real = h.publisher.publish

    async def refusing(messages):
        if any(m.key == b"c2" for m in messages):
            raise MessageSizeTooLargeError()
        await real(messages)

    monkeypatch.setattr(h.publisher, "publish", refusing)
    h.now = T0 + timedelta(minutes=30)
    assert await h.pipeline.fire_due_by_wall_clock() == 6
    assert sorted({e["call_id"] for e in h.published(topics.SLA)}) == ["c0", "c1", "c3"]
    [failed] = [row for row in h.store.timers.values() if row.call_id == "c2"]
    assert failed.next_deadline_at is None and "MessageSizeTooLargeError" in (failed.failed_reason or "")
    assert await h.pipeline.fire_due_by_wall_clock() == 0


# -- overrides ----------------------------------------------------------------------------------


def override(call_id: str, route: str, **approval: str) -> dict[str, Any]:
    return {"type": "triage.overridden", "event_id": f"{call_id}-ov-{route}", "call_id": call_id,
            "occurred_at": at(2), "route": route, "overridden_by": "dispatcher-17", "reason": "caller calmer",
            **approval}


async def test_an_override_lowering_safety_without_an_approver_is_refused(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", weapon_present=True))
    await h.send(override("c1", "diversion_line"))
    [letter] = h.published(topics.DEADLETTER)
    assert letter["reason"] == "override_refused" and "weapon_present" in letter["error"]
    assert [d["route"] for d in h.published(topics.TRIAGE)] == ["emergency"]
    assert h.metric("crisis_triage_safety_overrides_total", outcome="refused") == 1
    await h.send(override("c1", "co_responder", approved_by="sup-2", approved_by_role="dispatcher"))
    assert reasons(h) == ["override_refused", "override_refused"], "a role the policy does not name"


async def test_an_approved_override_lowering_safety_is_kept_and_counted(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", violence_or_threat_to_others=True))
    await h.send(override("c1", "co_responder", approved_by="sup-2", approved_by_role="supervisor"))
    _, dispatcher = h.published(topics.TRIAGE)
    assert (dispatcher["route"], dispatcher["approved_by"], dispatcher["approved_by_role"]) == (
        "co_responder", "sup-2", "supervisor")
    assert dispatcher["safety_flags"] == ["violence_or_threat_to_others"]
    assert h.metric("crisis_triage_safety_overrides_total", outcome="approved") == 1
    # The team was already awaited as second response: that request's deadlines stand.
    assert h.sla_timer("c1").requested_at == T0 and h.sla_timer("c1").running


async def test_overrides_towards_police_or_without_safety_flags_need_no_approver(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="flagged", caller_requests_police=True),
                 call_received_factory(call_id="plain"))
    await h.send(override("flagged", "emergency"), override("plain", "diversion_line"))
    assert reasons(h) == []
    assert h.metric("crisis_triage_safety_overrides_total", outcome="approved") == 0


async def test_the_window_follows_the_configured_settings(call_received_factory):
    h = Harness()
    h.pipeline.settings = dataclasses.replace(h.settings, event_time_not_before="2026-01-01T00:00:00+00:00",
                                              event_time_max_ahead_seconds=3600)
    await h.send(call_received_factory(call_id="old", occurred_at="2025-12-31T23:00:00Z"),
                 call_received_factory(call_id="new"),
                 call_received_factory(call_id="ahead", occurred_at=(h.now + timedelta(hours=2)).isoformat()))
    assert reasons(h) == ["implausible_time", "implausible_time"] and set(h.store.calls) == {"new"}


async def test_a_safety_flag_its_nature_code_means_protects_the_call_from_an_unapproved_override(
        call_received_factory):
    """MPDS 25-B-6V means violence: the call is treated as flagged, even with no flag from the call taker."""
    h = Harness()
    await h.send(call_received_factory(call_id="c1", mpds_code="25-B-6V", concerns=[]))
    [decision] = h.published(topics.TRIAGE)
    assert decision["safety_flags"] == ["violence_or_threat_to_others"] and decision["route"] == "emergency"
    await h.send(override("c1", "diversion_line"))
    assert reasons(h) == ["override_refused"]


async def test_a_fault_of_our_own_in_publishing_loses_nothing_it_waits_and_alerts(call_received_factory,
                                                                                  monkeypatch):
    """A bug that fails every publish fails even each record alone and its dead letter: that is the
    pipeline's fault, not the record's. The record is never skipped: its dead letter is retried until
    the fault is gone (here, after 3 attempts), counted under stage dead_letter."""
    h = Harness()
    monkeypatch.setattr("agents.failures.RETRY_DELAYS_SECONDS", (0,))
    real = h.publisher.publish
    broken = {"attempts": 0}

    async def buggy(messages):
        if any(m.topic == topics.DEADLETTER for m in messages):
            broken["attempts"] += 1
            if broken["attempts"] <= 3:
                raise TypeError("a bug in our publishing")
        if any(m.topic == topics.TRIAGE for m in messages):
            raise TypeError("a bug in our publishing")
        await real(messages)

    monkeypatch.setattr(h.publisher, "publish", buggy)
    await h.send(call_received_factory(call_id="c1"))
    [letter] = h.published(topics.DEADLETTER)
    assert letter["reason"] == "processing_error" and "TypeError" in letter["error"]
    assert h.metric("crisis_batch_retries_total", stage="dead_letter") == 3
