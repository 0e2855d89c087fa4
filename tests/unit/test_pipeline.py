"""CallPipeline on the in-memory store and publisher: decisions, dead letters, overrides, SLA timers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from domain.policy import load_policy
from domain.timers.sla_arrival import SlaArrival, SlaTimer
from sinks.base import InMemoryStore
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import ListPublisher

T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


class Harness:
    def __init__(self, clock: str = "event", now: datetime | None = None) -> None:
        self.settings = Settings(timer_clock=clock, timer_lateness_seconds=0)  # type: ignore[arg-type]
        self.store = InMemoryStore()
        self.publisher = ListPublisher()
        self.metrics = PipelineMetrics(CollectorRegistry())
        self.now = now or T0 + timedelta(days=365)
        self.pipeline = CallPipeline(self.settings, load_policy(), self.store, self.publisher, self.metrics,
                                     clock=lambda: self.now)
        self.offset = 0

    async def send(self, *events: dict[str, Any] | bytes, partition: int = 0) -> None:
        records = []
        for event in events:
            value = event if isinstance(event, bytes) else json.dumps(event).encode()
            key = None if isinstance(event, bytes) else event["call_id"].encode()
            records.append(InboundRecord(topics.CALLS, partition, self.offset, key, value))
            self.offset += 1
        await self.pipeline.handle(records)

    def sla_timer(self, call_id: str) -> SlaTimer:
        """The call's current co-responder arrival timer, as the store holds it."""
        return SlaArrival(load_policy()).decode(self.store.timer_states("sla_arrival")[call_id])

    def published(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.value) for m in self.publisher.on(topic)]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def arrival(call_id: str, minutes: float, unit_type: str = "co_responder", n: int = 0) -> dict[str, Any]:
    return {"type": "unit.arrived", "event_id": f"{call_id}-arr-{minutes}-{n}", "call_id": call_id,
            "occurred_at": at(minutes), "unit_id": "CRU1", "unit_type": unit_type}


def tick(minutes: float, call_id: str = "clock") -> dict[str, Any]:
    """Any event moves event time forward; a dispatch of another call is the least intrusive one."""
    return {"type": "unit.dispatched", "event_id": f"tick-{minutes}", "call_id": call_id,
            "occurred_at": at(minutes), "unit_id": "P1", "unit_type": "police"}


async def test_decision_is_stored_and_published_without_personal_data(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", caller_phone="+13145550199"))
    [decision] = h.published(topics.TRIAGE)
    assert decision["route"] == "diversion_line"
    assert decision["reasons"] == ["no_safety_flags_phone_resolvable"]
    assert decision["policy_version"] == load_policy().version
    assert "5550199" not in json.dumps(decision)
    assert decision["person_ref"] and len(decision["person_ref"]) == 20
    assert set(h.store.calls) == {"c1"}
    assert h.metric("crisis_triage_decisions_total", route="diversion_line") == 1


async def test_malformed_records_are_dead_lettered_with_reason_and_bytes():
    h = Harness()
    await h.send(b"{nope", b'{"type": "call.flying", "event_id": "e", "call_id": "c", "occurred_at": "x"}',
                 b'{"type": "call.received", "event_id": "e2", "call_id": "c2"}')
    letters = h.published(topics.DEADLETTER)
    assert [letter["reason"] for letter in letters] == ["invalid_json", "unknown_type", "missing_field"]
    assert all(letter["error"] for letter in letters)
    assert letters[0]["original_value_base64"] == "e25vcGU="  # b"{nope"
    assert h.metric("crisis_deadletter_events_total", reason="invalid_json") == 1


async def test_replaying_a_batch_stores_and_publishes_nothing_twice(call_received_factory):
    h = Harness()
    batch = [call_received_factory(call_id=f"c{n}", event_id=f"e{n}") for n in range(5)]
    await h.send(*batch)
    await h.send(*batch)
    assert len(h.store.decisions) == 5
    assert len(h.publisher.on(topics.TRIAGE)) == 5


async def test_override_replaces_route_keeps_both_and_is_counted(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1"))
    await h.send({"type": "triage.overridden", "event_id": "o1", "call_id": "c1", "occurred_at": at(2),
                  "route": "co_responder", "overridden_by": "dispatcher-17", "reason": "caller hung up"})
    rules, dispatcher = h.published(topics.TRIAGE)
    assert (rules["type"], dispatcher["type"]) == ("triage.decided", "triage.overridden")
    assert "override_reason" not in dispatcher  # free text from a dispatcher stays internal
    [stored] = [d for d in h.store.decisions.values() if d.type == "triage.overridden"]
    assert stored.override_reason == "caller hung up" and stored.overridden_by == "dispatcher-17"
    assert (dispatcher["previous_route"], dispatcher["route"]) == ("diversion_line", "co_responder")
    assert len(h.store.decisions) == 2
    assert h.metric("crisis_triage_overrides_total", from_route="diversion_line", to_route="co_responder") == 1
    # Overriding to the co-responder team starts its arrival timer.
    assert h.sla_timer("c1").requested_at == T0 + timedelta(minutes=2)


async def test_override_of_unknown_call_is_dead_lettered():
    h = Harness()
    await h.send({"type": "triage.overridden", "event_id": "o1", "call_id": "ghost", "occurred_at": at(0),
                  "route": "emergency", "overridden_by": "d1", "reason": "r"})
    [letter] = h.published(topics.DEADLETTER)
    assert letter["reason"] == "unknown_call"


async def test_on_time_team_meets_the_sla(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False))
    await h.send(arrival("c1", 12))
    [met] = h.published(topics.SLA)
    assert met["type"] == "sla.met" and met["arrival_seconds"] == 720 and met["response"] == "first"


async def test_late_team_gets_warning_then_breach_then_late_arrival_by_event_time(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False))
    await h.send(tick(16))  # warning after 15 min
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.warning"]
    await h.send(tick(21))  # breach after 20 min
    await h.send(arrival("c1", 25))
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.warning", "sla.breached", "sla.late_arrival"]
    assert h.metric("crisis_sla_events_total", type="sla.breached", response="first") == 1


async def test_arrival_in_the_same_batch_as_later_events_is_met_not_breached(call_received_factory):
    """Replay at full speed: the deadline passes within the batch, but the arrival came before it."""
    h = Harness()
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False),
                 arrival("c1", 10), tick(60))
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.met"]


async def test_second_response_timer_for_emergency_with_behavioral_concern(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", weapon_present=True))
    assert h.sla_timer("c1").response.value == "second"
    await h.send(tick(11))  # second response warns after 10 min
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.warning"]


async def test_closed_call_cancels_timer_and_odd_arrivals_are_explained(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False))
    await h.send({"type": "call.closed", "event_id": "x1", "call_id": "c1", "occurred_at": at(5),
                  "disposition": "stabilized_on_scene"})
    await h.send(tick(60))
    assert h.published(topics.SLA) == []
    await h.send(arrival("unknown", 1))
    await h.send(call_received_factory(call_id="c2", person_in_crisis_is_caller=False),
                 arrival("c2", 3), arrival("c2", 4, n=1))
    assert h.metric("crisis_unmatched_events_total", reason="arrival_without_timer") == 1
    assert h.metric("crisis_unmatched_events_total", reason="duplicate_arrival") == 1
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.met"]


async def test_wall_clock_fires_deadlines_without_any_event(call_received_factory):
    h = Harness(clock="wall", now=T0)
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False))
    h.now = T0 + timedelta(minutes=30)
    fired = await h.pipeline.fire_due_by_wall_clock()
    assert fired == 2
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.warning", "sla.breached"]
    assert await h.pipeline.fire_due_by_wall_clock() == 0  # fired once only
    assert h.metric("crisis_timers_pending", kind="sla_arrival") == 0


async def test_wall_clock_mode_never_lets_a_fast_cad_clock_breach_early(call_received_factory):
    h = Harness(clock="wall", now=T0 + timedelta(minutes=1))
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False), tick(90))
    assert h.published(topics.SLA) == []


@pytest.mark.parametrize("failures", [1, 3])
async def test_store_errors_are_retried_not_dropped(call_received_factory, monkeypatch, failures):
    h = Harness()
    monkeypatch.setattr("agents.failures.RETRY_DELAYS_SECONDS", (0,))
    real = h.publisher.publish
    calls = {"n": 0}

    async def flaky(messages):
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ConnectionError("broker unavailable")
        await real(messages)

    monkeypatch.setattr(h.publisher, "publish", flaky)
    await h.send(call_received_factory(call_id="c1"))
    assert len(h.publisher.on(topics.TRIAGE)) == 1
    assert len(h.store.decisions) == 1
    assert h.metric("crisis_batch_retries_total", stage="batch") == failures


async def test_outputs_carry_the_partition_of_the_calls_input(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False), partition=3)
    await h.send(b"{broken", partition=2)
    await h.send(tick(30, call_id="other"), partition=3)
    by_topic = {(m.topic, m.partition) for m in h.publisher.messages}
    assert by_topic == {(topics.TRIAGE, 3), (topics.SLA, 3), (topics.DEADLETTER, 2)}


def dispatch(call_id: str, minutes: float, unit_type: str = "co_responder") -> dict[str, Any]:
    return {"type": "unit.dispatched", "event_id": f"{call_id}-disp-{minutes}", "call_id": call_id,
            "occurred_at": at(minutes), "unit_id": "CRU1", "unit_type": unit_type}


async def test_dispatch_is_recorded_and_arrival_before_dispatch_is_explained(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False), dispatch("c1", 2))
    assert h.sla_timer("c1").dispatched_at == T0 + timedelta(minutes=2)
    await h.send(call_received_factory(call_id="c2", person_in_crisis_is_caller=False), arrival("c2", 5))
    assert h.metric("crisis_unmatched_events_total", reason="arrival_before_dispatch") == 1
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.met"]  # still met: the team is there
    await h.send(dispatch("c3-diversion", 1))
    assert h.metric("crisis_unmatched_events_total", reason="dispatch_without_timer") == 1


async def test_replaying_a_closed_calls_stream_never_restarts_its_timer(call_received_factory):
    h = Harness()
    stream = [call_received_factory(call_id="c1", person_in_crisis_is_caller=False),
              {"type": "call.closed", "event_id": "x1", "call_id": "c1", "occurred_at": at(5),
               "disposition": "stabilized_on_scene"}]
    await h.send(*stream)
    await h.send(stream[0])  # the call.received again, e.g. a consumer group reset
    await h.send(tick(60))
    assert h.sla_timer("c1").closed_at == T0 + timedelta(minutes=5)
    assert h.published(topics.SLA) == []


def override_to(call_id: str, route: str, minutes: float, n: int) -> dict[str, Any]:
    return {"type": "triage.overridden", "event_id": f"{call_id}-ov{n}", "call_id": call_id,
            "occurred_at": at(minutes), "route": route, "overridden_by": "d1", "reason": "r"}


async def test_replayed_overrides_do_not_cancel_the_timer_of_a_later_request(call_received_factory):
    h = Harness()
    received = call_received_factory(call_id="c1", person_in_crisis_is_caller=False)
    first, second = override_to("c1", "emergency", 1, 1), override_to("c1", "co_responder", 2, 2)
    await h.send(received, first, second)
    assert h.sla_timer("c1").requested_at == T0 + timedelta(minutes=2) and h.sla_timer("c1").running
    await h.send(first, second)  # replayed after a crash: the old close predates the new request
    assert h.sla_timer("c1").running
    await h.send(tick(2 + 16))
    assert [e["type"] for e in h.published(topics.SLA)] == ["sla.warning"]


async def test_times_with_any_offset_give_the_same_ids_as_utc(call_received_factory):
    chicago = call_received_factory(call_id="c1", person_in_crisis_is_caller=False,
                                    occurred_at="2026-11-02T09:00:00-06:00")
    utc = dict(chicago, occurred_at="2026-11-02T15:00:00+00:00")
    ids = []
    for event in (chicago, utc):
        h = Harness()
        await h.send(event)
        await h.send(tick(30))
        ids.append([e["event_id"] for e in h.published(topics.SLA)])
    assert ids[0] == ids[1] and len(ids[0]) == 2


async def test_nul_characters_and_huge_records_are_dead_lettered_not_retried(call_received_factory):
    h = Harness()
    event = call_received_factory(call_id="c1", district="d\u0000")
    huge = b"x" * 700_000
    await h.send(json.dumps(event).encode(), huge)
    letters = h.published(topics.DEADLETTER)
    assert [letter["reason"] for letter in letters] == ["invalid_field", "invalid_json"]
    assert "control character" in letters[0]["error"]
    assert letters[1]["original_value_base64"] == "" and "700000 bytes" in letters[1]["error"]
    assert h.metric("crisis_batch_retries_total", stage="batch") == 0


async def test_arrival_after_close_is_explained_as_such(call_received_factory):
    h = Harness()
    await h.send(call_received_factory(call_id="c1", person_in_crisis_is_caller=False),
                 {"type": "call.closed", "event_id": "x1", "call_id": "c1", "occurred_at": at(5),
                  "disposition": "cancelled"},
                 arrival("c1", 6))
    assert h.metric("crisis_unmatched_events_total", reason="arrival_after_close") == 1
    assert h.metric("crisis_unmatched_events_total", reason="arrival_before_dispatch") == 0
    assert h.metric("crisis_unmatched_events_total", reason="duplicate_arrival") == 0


async def test_a_record_postgres_refuses_for_good_is_dead_lettered_alone(call_received_factory, monkeypatch):
    """Deterministic refusals (asyncpg.DataError) must not block the partition behind one record."""
    import asyncpg

    h = Harness()
    real_transaction = h.store.transaction

    def refusing_transaction():
        context = real_transaction()

        class Refusing:
            async def __aenter__(self):
                tx = await context.__aenter__()
                real_write = tx.write

                async def write(batch):
                    if any(call.call_id == "bad" for call, _ in batch.calls):
                        raise asyncpg.DataError("invalid byte sequence")
                    return await real_write(batch)

                tx.write = write
                return tx

            async def __aexit__(self, *exc):
                return await context.__aexit__(*exc)

        return Refusing()

    monkeypatch.setattr(h.store, "transaction", refusing_transaction)
    await h.send(call_received_factory(call_id="ok-1"), call_received_factory(call_id="bad"),
                 call_received_factory(call_id="ok-2"))
    assert set(h.store.calls) == {"ok-1", "ok-2"}
    [letter] = h.published(topics.DEADLETTER)
    assert letter["reason"] == "unstorable" and "invalid byte sequence" in letter["error"]
    assert h.metric("crisis_batch_retries_total", stage="batch") == 0
