"""docs/asyncapi.json: generated from the pydantic models, valid AsyncAPI 3.0.0, and free of personal data
on the partner topics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from typer.testing import CliRunner

from crisis.cli import app
from crisis.services import REPO_ROOT
from schemas.asyncapi import asyncapi_document, asyncapi_json
from schemas.calls import CALL_EVENT_TYPES
from streams import topics

COMMITTED = REPO_ROOT / "docs" / "asyncapi.json"
OFFICIAL_SCHEMA = Path(__file__).resolve().parent.parent / "fixtures" / "asyncapi-3.0.0-schema.json"
REGENERATE = "docs/asyncapi.json is out of date: run `crisis asyncapi --out docs/asyncapi.json` and commit it"
PARTNER_TOPICS = topics.PARTNER_TOPICS


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document()


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(OFFICIAL_SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"].startswith("http://json-schema.org/draft-07/schema")
    Draft7Validator.check_schema(schema)
    # The bundled schema holds every definition it refers to under its own $id: resolve them from
    # this one file, never from the network.
    registry = (Resource.from_contents(schema, default_specification=DRAFT7) @ Registry()).crawl()
    return Draft7Validator(schema, registry=registry)


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), f"only local references expected, got {node['$ref']}"
        node = document_part(document, node["$ref"])
    return node


def document_part(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def channel_for(document: dict[str, Any], address: str) -> dict[str, Any]:
    (channel,) = [c for c in document["channels"].values() if c["address"] == address]
    return channel


def payloads(document: dict[str, Any], address: str) -> Iterator[dict[str, Any]]:
    for message in channel_for(document, address)["messages"].values():
        yield resolve(document, resolve(document, message)["payload"])


def property_names(document: dict[str, Any], schema: Any, seen: set[str] | None = None) -> set[str]:
    """Every property name anywhere in a schema, following local $refs (each once)."""
    seen = set() if seen is None else seen
    names: set[str] = set()
    if isinstance(schema, list):
        for item in schema:
            names |= property_names(document, item, seen)
    elif isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            names |= property_names(document, document_part(document, ref), seen)
        properties = schema.get("properties")
        if isinstance(properties, dict):
            names |= set(properties)
        for value in schema.values():
            names |= property_names(document, value, seen)
    return names


def test_committed_document_is_up_to_date(document):
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    assert committed, REGENERATE
    assert json.loads(committed) == document, REGENERATE
    assert committed == asyncapi_json(), REGENERATE  # formatting too, so a regeneration gives no diff


def test_cli_prints_the_document():
    result = CliRunner().invoke(app, ["asyncapi"])
    assert result.exit_code == 0, result.output
    assert result.stdout == asyncapi_json()


def test_document_validates_against_the_official_asyncapi_3_schema(document, validator):
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors)


def test_the_validator_rejects_a_broken_document(document, validator):
    """The vendored schema really constrains the document (down to the Kafka binding's own schema)."""
    broken = json.loads(json.dumps(document))
    (message,) = [m for m in broken["components"]["messages"].values() if m["name"] == "sla.event"]
    message["bindings"]["kafka"]["partitionKey"] = "call_id"
    assert not validator.is_valid(broken)
    assert not validator.is_valid({**document, "asyncapi": "2.6.0"})


def test_basics(document):
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "crisis-pipeline"
    assert document["info"]["version"] == "0.1.0"
    assert document["servers"]["kafka"] == {**document["servers"]["kafka"], "host": "localhost:9092",
                                           "protocol": "kafka"}
    assert sorted(c["address"] for c in document["channels"].values()) == sorted(topics.ALL_TOPICS)
    actions = {resolve(document, op["channel"])["address"]: op["action"] for op in document["operations"].values()}
    assert actions == {topics.CALLS: "receive", topics.TRIAGE: "send", topics.SLA: "send",
                       topics.FOLLOWUPS: "send", topics.DEADLETTER: "send", topics.OUTCOMES: "send"}
    for message in document["components"]["messages"].values():
        assert message["bindings"]["kafka"]["key"]["type"] in ("string", ["string", "null"])
    for channel in document["channels"].values():
        assert "read" in channel["description"]


def test_every_call_event_type_has_a_message_on_the_calls_topic(document):
    types = {payload["properties"]["type"].get("const") for payload in payloads(document, topics.CALLS)}
    assert types == set(CALL_EVENT_TYPES)


def test_caller_phone_is_marked_as_personal_data(document):
    (call_received,) = [p for p in payloads(document, topics.CALLS)
                        if p["properties"]["type"].get("const") == "call.received"]
    assert "personal data" in call_received["properties"]["caller_phone"]["description"].lower()


@pytest.mark.parametrize("address", PARTNER_TOPICS)
def test_partner_topics_carry_no_caller_phone(document, address):
    found = [property_names(document, payload) for payload in payloads(document, address)]
    assert found, f"no payload documented for {address}"
    for names in found:
        assert "caller_phone" not in names
        assert "override_reason" not in names  # excluded from serialisation: never published
    assert "caller_phone" in property_names(document, list(payloads(document, topics.CALLS)))  # the check works
    assert "no personal data" in channel_for(document, address)["description"]
