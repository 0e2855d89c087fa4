"""Regressions for what the hostile-input fuzz of the fault-injection suite found (crisis.chaos.hostile)."""

from __future__ import annotations

import json

import asyncpg
import pytest
from pydantic import ValidationError

from agents.failures import is_transient
from crisis.chaos.hostile import PLANTED_PHONE, PLANTED_TEXT
from schemas.calls import decode_call_event, describe_validation_error
from streams import topics
from tests.unit.test_pipeline import Harness


def _error(body: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        decode_call_event(json.dumps(body))
    return describe_validation_error(caught.value)


def test_an_unknown_field_named_with_personal_data_is_not_echoed(call_received_factory) -> None:
    for name in (PLANTED_PHONE, PLANTED_TEXT, "phone_13145550199"):
        error = _error({**call_received_factory(), name: True})
        assert name not in error and "555" not in error
        assert "Extra inputs are not permitted" in error
    # A mistyped field name is still named: that is what integrators need to fix.
    assert "districtt: Extra inputs are not permitted" in _error({**call_received_factory(), "districtt": "d"})


def test_an_unknown_type_is_not_echoed(call_received_factory) -> None:
    error = _error({**call_received_factory(), "type": PLANTED_PHONE})
    assert PLANTED_PHONE not in error and "555" not in error
    assert "unknown type; expected one of" in error and "'call.received'" in error


async def test_one_event_id_with_other_content_in_one_batch_publishes_the_first_only(call_received_factory):
    """Two copies of a call.received with one event id: Postgres keeps the first, and partners must
    never see one event id carry two different events."""
    harness = Harness()
    first = call_received_factory(call_id="dup", event_id="dup-e", person_in_crisis_is_caller=True)
    second = {**first, "district": "district-6", "person_in_crisis_is_caller": False}
    await harness.send(first, second)
    published = harness.published(topics.TRIAGE)
    assert len(published) == 1
    assert published[0]["district"] == "district-1" and published[0]["route"] == "diversion_line"
    assert harness.store.timer_states("sla_arrival") == {}, "the second copy's route must not start a timer"


def test_no_primary_during_a_failover_is_retried_not_dead_lettered() -> None:
    assert is_transient(asyncpg.exceptions.TargetServerAttributeNotMatched("no host is read-write"))
