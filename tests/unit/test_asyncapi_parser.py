"""docs/asyncapi.json read by the official AsyncAPI parser (``@asyncapi/parser``, run with Node), the library
partners' code generators and AsyncAPI tools are built on: no error, and what it reads is our models.

Beside the JSON Schema check in test_asyncapi.py: the parser also resolves every reference, applies the
specification's semantic rules (an operation's messages must belong to its channel, ...) and validates
each payload schema. The first run installs the pinned parser with npm (tests/asyncapi_parser.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from schemas.asyncapi import asyncapi_document
from schemas.calls import CALL_EVENT_MODELS
from streams import topics
from tests.asyncapi_parser import format_diagnostics, parse_documents, pinned_version
from tests.unit.test_asyncapi import COMMITTED

# What each topic carries, and in which JSON Schema mode the generator describes it (schemas/asyncapi.py).
TOPIC_MODELS: dict[str, list[tuple[type[BaseModel], JsonSchemaMode]]] = {
    topics.CALLS: [(model, "validation") for model in CALL_EVENT_MODELS],
    **{topic: [(model, "serialization")] for model, topic in topics.EMITTED_TOPICS.items()},
}
PARTNER_TOPICS = (topics.TRIAGE, topics.SLA, topics.FOLLOWUPS)


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The committed document and a deliberately broken copy, in one Node run (it takes seconds to start)."""
    broken = asyncapi_document()
    broken["operations"]["sendSlaEvents"]["channel"] = {"$ref": "#/channels/no-such-channel"}
    (sla_message,) = [m for m in broken["components"]["messages"].values() if m["name"] == "sla.event"]
    sla_message["bindings"]["kafka"]["partitionKey"] = "call_id"  # not a field of the Kafka message binding
    broken_path = tmp_path_factory.mktemp("asyncapi") / "broken.json"
    broken_path.write_text(json.dumps(broken))
    return parse_documents(COMMITTED, broken_path)


def _committed(parsed: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = parsed["documents"][0]
    assert Path(result["file"]) == COMMITTED
    return result


def test_the_pinned_parser_ran(parsed):
    assert parsed["parser"] == pinned_version()


def test_the_official_parser_finds_no_error_in_the_committed_document(parsed):
    result = _committed(parsed)
    errors = [d for d in result["diagnostics"] if d["severity"] == "error"]
    # Every diagnostic is shown, warnings and hints too, so a failure explains itself.
    assert result["parsed"] and not errors, format_diagnostics(result["diagnostics"])


def test_the_parser_reads_our_topics_and_operations(parsed):
    result = _committed(parsed)
    assert sorted(channel["address"] for channel in result["channels"]) == sorted(topics.ALL_TOPICS)
    actions = {operation["channels"][0]: operation["action"] for operation in result["operations"]}
    assert actions == {topics.CALLS: "receive", **{topic: "send" for topic in topics.EMITTED_TOPICS.values()}}
    for operation in result["operations"]:
        assert len(operation["channels"]) == 1, operation
        (channel,) = [c for c in result["channels"] if c["address"] == operation["channels"][0]]
        assert operation["messages"] == [message["id"] for message in channel["messages"]], operation["id"]


@pytest.mark.parametrize("address", sorted(TOPIC_MODELS))
def test_each_payload_the_parser_reads_is_its_model(parsed, address):
    """Property names and required ones, as the parser resolved them, equal the pydantic models': a partner's
    generated code has the fields we write (or, inbound, accept)."""
    (channel,) = [c for c in _committed(parsed)["channels"] if c["address"] == address]
    read = {message["id"]: (message["properties"], message["required"]) for message in channel["messages"]}
    expected = {}
    for model, mode in TOPIC_MODELS[address]:
        schema = model.model_json_schema(mode=mode)
        expected[model.__name__] = (sorted(schema["properties"]), sorted(schema.get("required", [])))
    assert read == expected


@pytest.mark.parametrize("address", PARTNER_TOPICS)
def test_partner_payloads_as_the_parser_reads_them_carry_no_personal_data(parsed, address):
    (channel,) = [c for c in _committed(parsed)["channels"] if c["address"] == address]
    assert channel["messages"], address
    for message in channel["messages"]:
        assert "caller_phone" not in message["properties"], message["id"]
        assert "override_reason" not in message["properties"], message["id"]


def test_the_parser_reports_a_broken_document(parsed):
    """The check is not vacuous: a dangling reference and a field the Kafka binding does not have are errors."""
    result = parsed["documents"][1]
    errors = {(d["code"], d["path"]) for d in result["diagnostics"] if d["severity"] == "error"}
    assert not result["parsed"]
    assert ("invalid-ref", "operations/sendSlaEvents/channel/$ref") in errors, errors
    assert any(path.endswith("bindings/kafka/partitionKey") for _, path in errors), errors
