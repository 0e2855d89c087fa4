"""Follow-ups after a crisis contact, end to end: every emitted event and the stored row, per scenario.

Each scenario runs on the in-memory store and on Apache Kafka + PostgreSQL with a real worker
(``backend`` in conftest.py). Default policy: attempt 1 due 24 h after the close, attempt 2 at 72 h,
attempt 3 at 7 days; overdue 4 h after a due time with no attempt; dropped out after 3 attempts
that do not reach the person; expired 30 days after the close.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from streams import topics
from tests.scenarios.conftest import Backend, ScenarioIds

# The end of the crisis contact (call.closed). Far enough in the past that every event of a
# scenario, up to 35 days later, is still before the wall clock (later times are refused).
T = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)
_events = itertools.count()


def at(hours: float) -> str:
    return (T + timedelta(hours=hours)).isoformat()


def _event(kind: str, call_id: str, hours: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": f"{call_id}-e{next(_events)}", "call_id": call_id, "occurred_at": at(hours),
            **fields}


def received(call_id: str, hours: float = -0.5, phone: str = "+13145550100") -> dict[str, Any]:
    """A behavioral-health call the rules send to the diversion line (the caller is the person in crisis)."""
    return _event("call.received", call_id, hours, center_id="stl-911", nature_code="MENTAL",
                  concerns=["mental_health"], person_in_crisis_is_caller=True, district="district-2",
                  caller_phone=phone)


def closed(call_id: str, hours: float = 0, disposition: str = "resolved_by_phone") -> dict[str, Any]:
    return _event("call.closed", call_id, hours, disposition=disposition)


def attempted(call_id: str, hours: float, result: str) -> dict[str, Any]:
    return _event("followup.attempted", call_id, hours, attempt_result=result, attempted_by="clinician-3",
                  channel="phone")


def completed(call_id: str, hours: float, linkage: str) -> dict[str, Any]:
    return _event("followup.completed", call_id, hours, linkage=linkage, completed_by="clinician-3")


def tick(ids: ScenarioIds, hours: float) -> dict[str, Any]:
    """Moves the scenario's event time: any event on its partition does; a police dispatch of another call."""
    return _event("unit.dispatched", ids("clock"), hours, unit_id="P1", unit_type="police")


async def steps(backend: Backend, call_id: str) -> list[tuple[Any, ...]]:
    """Follow-up events partners got for the call: (type, attempt, due in hours, at hours, linkage, attempts)."""
    def hours(text: str | None) -> float | None:
        return None if text is None else (datetime.fromisoformat(text) - T).total_seconds() / 3600

    events = await backend.published(topics.FOLLOWUPS, call_id)
    for event in events:
        assert event["contact"] == "diversion_line" and event["district"] == "district-2"
        assert event["person_ref"] and "5550100" not in str(event)  # pseudonymous, never the number
    return [(e["type"], e["attempt_number"], hours(e["due_at"]), hours(e["occurred_at"]), e["linkage"],
             e["attempts_made"]) for e in events]


async def test_reached_on_the_first_attempt_and_linked(backend: Backend, ids: ScenarioIds) -> None:
    call = ids("reached-first")
    await backend.send(received(call), closed(call), attempted(call, 5, "reached"),
                       completed(call, 6, "outpatient_mental_health"))
    assert await steps(backend, call) == [
        ("followup.due", 1, 24, 0, None, 0),
        ("followup.completed", None, None, 6, "outpatient_mental_health", 1),
    ]
    [done] = [e for e in await backend.published(topics.FOLLOWUPS, call) if e["type"] == "followup.completed"]
    assert done["days_from_contact"] == 0.25
    assert await backend.followup(call) == {"status": "completed", "attempts_made": 1, "contact": "diversion_line",
                                            "linkage": "outpatient_mental_health",
                                            "person_ref": done["person_ref"]}


async def test_no_answer_then_reached(backend: Backend, ids: ScenarioIds) -> None:
    call = ids("no-answer-then-reached")
    await backend.send(received(call), closed(call), attempted(call, 20, "no_answer"),
                       attempted(call, 50, "reached"), completed(call, 51, "peer_support"))
    assert await steps(backend, call) == [
        ("followup.due", 1, 24, 0, None, 0),
        ("followup.due", 2, 72, 20, None, 1),
        ("followup.completed", None, None, 51, "peer_support", 2),
    ]
    assert (await backend.followup(call) or {})["status"] == "completed"


async def test_dropped_out_after_the_last_failed_attempt(backend: Backend, ids: ScenarioIds) -> None:
    call = ids("dropped-out")
    await backend.send(received(call), closed(call), attempted(call, 20, "no_answer"),
                       attempted(call, 60, "left_message"), attempted(call, 150, "wrong_number"), tick(ids, 800))
    assert await steps(backend, call) == [
        ("followup.due", 1, 24, 0, None, 0),
        ("followup.due", 2, 72, 20, None, 1),
        ("followup.due", 3, 168, 60, None, 2),
        ("followup.dropped_out", None, None, 150, None, 3),
    ]
    row = await backend.followup(call)
    assert row is not None and (row["status"], row["attempts_made"], row["linkage"]) == ("dropped_out", 3, None)


async def test_overdue_when_no_attempt_is_recorded(backend: Backend, ids: ScenarioIds) -> None:
    call = ids("overdue")
    await backend.send(received(call), closed(call), tick(ids, 27.9))
    assert await steps(backend, call) == [("followup.due", 1, 24, 0, None, 0)]  # due + 4 h grace not yet passed
    await backend.send(tick(ids, 29))
    await backend.send(attempted(call, 30, "no_answer"))
    assert await steps(backend, call) == [
        ("followup.due", 1, 24, 0, None, 0),
        ("followup.overdue", 1, 24, 28, None, 0),
        ("followup.due", 2, 72, 30, None, 1),
    ]
    row = await backend.followup(call)
    assert row is not None and (row["status"], row["attempts_made"]) == ("open", 1)


async def test_expired_when_the_window_closes(backend: Backend, ids: ScenarioIds) -> None:
    call = ids("expired")
    await backend.send(received(call), closed(call), tick(ids, 31 * 24))
    assert await steps(backend, call) == [
        ("followup.due", 1, 24, 0, None, 0),
        ("followup.overdue", 1, 24, 28, None, 0),
        ("followup.expired", None, None, 30 * 24, None, 0),
    ]
    assert (await backend.followup(call) or {})["status"] == "expired"


async def test_declined(backend: Backend, ids: ScenarioIds) -> None:
    call = ids("declined")
    await backend.send(received(call), closed(call), attempted(call, 3, "declined"), tick(ids, 31 * 24))
    assert await steps(backend, call) == [
        ("followup.due", 1, 24, 0, None, 0),
        ("followup.completed", None, None, 3, "declined", 1),
    ]
    row = await backend.followup(call)
    assert row is not None and (row["status"], row["linkage"]) == ("completed", "declined")


async def test_a_second_contact_of_the_same_person_gets_a_schedule_of_its_own(backend: Backend,
                                                                               ids: ScenarioIds) -> None:
    first, second = ids("person-first"), ids("person-second")
    await backend.send(received(first), closed(first), received(second, 10), closed(second, 10.5),
                       attempted(first, 12, "reached"), completed(first, 13, "housing_or_social_services"),
                       tick(ids, 40))
    assert await steps(backend, first) == [
        ("followup.due", 1, 24, 0, None, 0),
        ("followup.completed", None, None, 13, "housing_or_social_services", 1),
    ]
    assert await steps(backend, second) == [
        ("followup.due", 1, 34.5, 10.5, None, 0),
        ("followup.overdue", 1, 34.5, 38.5, None, 0),
    ]
    one, two = await backend.followup(first), await backend.followup(second)
    assert one is not None and two is not None
    assert one["person_ref"] == two["person_ref"], "the same person: reports count people with two open"
    assert (one["status"], two["status"]) == ("completed", "open")


async def test_no_follow_up_after_an_arrest_or_for_a_call_left_to_police(backend: Backend, ids: ScenarioIds) -> None:
    arrested, emergency = ids("arrested"), ids("police-only")
    police_call = received(emergency)
    police_call["concerns"] = []  # no behavioral-health concern: ordinary dispatch, no crisis contact
    await backend.send(received(arrested), closed(arrested, disposition="arrested"), police_call, closed(emergency),
                       attempted(arrested, 5, "reached"), tick(ids, 31 * 24))
    assert await backend.published(topics.FOLLOWUPS, arrested) == []
    assert await backend.published(topics.FOLLOWUPS, emergency) == []
    assert await backend.followup(arrested) is None and await backend.followup(emergency) is None
