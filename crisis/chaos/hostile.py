"""Hostile input for ``crisis.calls.v1``: the edge cases by name, and a hypothesis-driven fuzz around them.

Named cases (``edge_cases``): malformed and huge JSON (up to the broker's 1 MiB message limit),
deep nesting, invalid UTF-8, null keys and tombstones, duplicate JSON keys, control characters and
ANSI escapes, wrong types, unknown types, timestamps at the edges of what is accepted, SQL-looking
strings, and lifecycle events out of order (an arrival, a close, an override before the call, a
call after its close, one event id with two contents).

Fuzzed cases (``fuzzed``): hypothesis draws valid events and breaks them (a field replaced by any
JSON value, a field dropped, an unknown one added, personal data planted in a value or a field
name), arbitrary JSON documents, arbitrary bytes, and valid events with arbitrary text. Drawn with
``derandomize=True``: the same corpus on every run, so a failure can be replayed.

Personal data is planted on purpose (``PLANTED_PHONE``, ``PLANTED_TEXT``) in the fields meant for it
(``caller_phone``, an override's ``reason``), in unknown fields and as field names: no partner topic,
no dead letter's reason or error, no header and no log line may repeat it. It is never planted in
the identifiers and codes partners receive by contract (call and event ids, districts, dispatcher
ids): a CAD that puts a phone number there has it published, and no pipeline can tell (an early
fuzz run found exactly that, a call id holding a dispatcher's note).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PLANTED_PHONE = "+1 (314) 555-0199"
PLANTED_TEXT = "Caller Quinta Brightwater says her neighbour threatened her; ref FT00c0ffee42"
HOSTILE_AT = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)  # inside the normal stream's time span
BROKER_LIMIT = 1_000_000  # bytes of value: under the broker's default message.max.bytes (1 MiB + 12)


@dataclass(frozen=True)
class HostileRecord:
    """One record to publish as is: any key (or none), any bytes (or none: a tombstone)."""

    key: bytes | None
    value: bytes | None
    label: str
    type: str = "hostile"


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=True).encode()


def received(call_id: str, event_id: str, at: datetime = HOSTILE_AT, **fields: Any) -> dict[str, Any]:
    """A valid ``call.received`` body; ``fields`` override or add."""
    return {"type": "call.received", "event_id": event_id, "call_id": call_id, "occurred_at": at.isoformat(),
            "center_id": "stl-911", "nature_code": "MENTAL", "concerns": ["mental_health"],
            "person_in_crisis_is_caller": False, "district": "district-2", "caller_phone": PLANTED_PHONE,
            **fields}


def lifecycle(kind: str, call_id: str, event_id: str, at: datetime = HOSTILE_AT, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "event_id": event_id, "call_id": call_id, "occurred_at": at.isoformat()}
    defaults: dict[str, dict[str, Any]] = {
        "unit.dispatched": {"unit_id": "CRU9", "unit_type": "co_responder"},
        "unit.arrived": {"unit_id": "CRU9", "unit_type": "co_responder"},
        "call.closed": {"disposition": "safety_plan"},
        "triage.overridden": {"route": "co_responder", "overridden_by": "dispatcher-7", "reason": PLANTED_TEXT},
    }
    return {**body, **defaults.get(kind, {}), **fields}


def edge_cases(tag: str, now: datetime) -> list[HostileRecord]:
    """The named cases; ids start with ``tag`` so runs never collide."""
    cases: list[HostileRecord] = []

    def add(label: str, value: bytes | None, key: bytes | None = b"") -> None:
        cases.append(HostileRecord(f"{tag}-{label}".encode() if key == b"" else key, value, label))

    def call(label: str, drop: tuple[str, ...] = (), **fields: Any) -> None:
        body = {**received(f"{tag}-{label}", f"{tag}-{label}-e"), **fields}
        add(label, _dumps({name: value for name, value in body.items() if name not in drop}))

    # Size and shape.
    padding = "x" * (BROKER_LIMIT - 2000)
    call("huge-unknown-field", padding=padding)
    call("huge-district", district=padding)
    add("huge-not-json", b"{" + b"\x00" * (BROKER_LIMIT - 10))
    add("deep-nesting-array", b"[" * 200_000 + b"]" * 200_000)
    add("deep-nesting-object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
    call("deep-nesting-field", concerns=json.loads("[" * 400 + "]" * 400))
    add("empty", b"")
    add("whitespace", b" \n\t ")
    for label, scalar in (("json-null", b"null"), ("json-number", b"42"), ("json-string", b'"call.received"'),
                          ("json-array", b"[]"), ("json-true", b"true"), ("nan", b"NaN")):
        add(label, scalar)
    # Encodings and keys.
    add("invalid-utf8", b'{"type":"call.received","call_id":"\xff\xfe","event_id":"\xc3\x28"}')
    add("utf16", _dumps(received(f"{tag}-utf16", f"{tag}-utf16-e")).decode().encode("utf-16"))
    add("tombstone", None)
    add("null-key-valid", _dumps(received(f"{tag}-nullkey", f"{tag}-nullkey-e")), key=None)
    add("binary-key-valid", _dumps(received(f"{tag}-binkey", f"{tag}-binkey-e")), key=b"\xff\x00\xfe")
    add("huge-key-valid", _dumps(received(f"{tag}-hugekey", f"{tag}-hugekey-e")), key=b"k" * 100_000)
    add("duplicate-keys", f'{{"type":"call.received","type":"unit.arrived","event_id":"{tag}-dup-e",'
                          f'"call_id":"{tag}-dup","occurred_at":"{HOSTILE_AT.isoformat()}"}}'.encode())
    add("lone-surrogate", _dumps(received(f"{tag}-surrogate", f"{tag}-surrogate-e")).replace(
        b'"district-2"', b'"\\ud800"'))
    # Characters.
    call("nul-in-id", call_id=f"{tag}-nul\u0000id")
    call("ansi-escape", district="\u001b[31mred\u001b[0m")
    call("bidi-override", district="district\u202e1")
    call("newline-in-id", event_id=f"{tag}-nl\n-e")
    call("emoji-district", district="district-\U0001f6a8")
    call("combining-marks", nature_code="MENTAL" + "\u0301" * 50)
    # Types.
    call("bool-as-string", weapon_present="yes")
    call("time-as-number", occurred_at=1736164800)
    call("concerns-as-string", concerns="mental_health")
    call("unknown-concern", concerns=["alien_abduction"])
    call("phone-as-number", caller_phone=13145550199)
    call("phone-too-long", caller_phone=PLANTED_PHONE * 4)
    call("phone-with-control", caller_phone=PLANTED_PHONE + "\u0007")
    call("unknown-field-named-phone", **{PLANTED_PHONE: True})
    call("unknown-field-named-text", **{PLANTED_TEXT: 1})
    call("missing-type", drop=("type",))
    call("type-null", type=None)
    call("missing-call-id", drop=("call_id",))
    add("unknown-type", _dumps({**received(f"{tag}-teleport", f"{tag}-teleport-e"), "type": "call.teleported"}))
    add("type-not-string", _dumps({**received(f"{tag}-typenum", f"{tag}-typenum-e"), "type": 7}))
    # Time at the edges.
    for label, moment in (("year-1", "0001-01-01T00:00:00Z"), ("year-9999", "9999-12-31T23:59:59-23:59"),
                          ("before-1900", "1899-12-31T23:59:59Z"), ("exactly-1900", "1900-01-01T00:00:00Z"),
                          ("leap-second", "2025-06-30T23:59:60Z"), ("feb-30", "2025-02-30T10:00:00Z"),
                          ("no-offset", "2025-01-06T12:00:00"), ("offset-24h", "2025-01-06T12:00:00+24:00"),
                          ("far-future", (now + timedelta(days=3)).isoformat()),
                          ("lowercase-t", "2025-01-06t12:00:00z"), ("date-only", "2025-01-06")):
        call(f"time-{label}", occurred_at=moment)
    # SQL-looking strings (stored as data, never run).
    call("sql-call-id", call_id=f"{tag}-x'); DROP TABLE calls; --")
    call("sql-district", district="' OR 1=1; --")
    call("sql-nature", nature_code="'; SELECT pg_sleep(30); --")
    call("sql-json", center_id='{"$where": "1==1"}')
    # Out of order, for one call.
    order = f"{tag}-order"
    add("arrival-before-call", _dumps(lifecycle("unit.arrived", order, f"{order}-arr")), key=order.encode())
    add("close-before-call", _dumps(lifecycle("call.closed", order, f"{order}-close")), key=order.encode())
    add("override-before-call", _dumps(lifecycle("triage.overridden", order, f"{order}-ovr")), key=order.encode())
    add("call-after-close", _dumps(received(order, f"{order}-recv")), key=order.encode())
    add("same-id-other-content", _dumps(received(order, f"{order}-recv", district="district-6")),
        key=order.encode())
    add("override-unknown-call", _dumps(lifecycle("triage.overridden", f"{tag}-nobody", f"{tag}-nobody-ovr")))
    add("override-lowering-without-approval", _dumps(lifecycle(
        "triage.overridden", f"{tag}-weapon", f"{tag}-weapon-ovr", at=HOSTILE_AT + timedelta(minutes=1),
        route="diversion_line")), key=f"{tag}-weapon".encode())
    cases.insert(len(cases) - 1, HostileRecord(f"{tag}-weapon".encode(), _dumps(received(
        f"{tag}-weapon", f"{tag}-weapon-e", weapon_present=True)), "call-with-weapon"))
    return cases


def near_future(tag: str, now: datetime) -> HostileRecord:
    """A call 23 hours ahead of the clock: accepted (the limit is a day). Published last: it moves its
    partition's event time a day ahead, so everything after it there would be late."""
    return HostileRecord(f"{tag}-ahead".encode(), _dumps(received(f"{tag}-ahead", f"{tag}-ahead-e",
                                                                  at=now + timedelta(hours=23))), "near-future")


def fuzzed(tag: str, count: int) -> list[HostileRecord]:
    """``count`` records drawn by hypothesis (deterministic), ids made unique with ``tag``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
               | st.text(max_size=40) | st.sampled_from(["", " ", "\u0000"]))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
    templates: list[Callable[[], dict[str, Any]]] = [
        lambda: received("CALL_ID", "EVENT_ID"),
        lambda: lifecycle("unit.dispatched", "CALL_ID", "EVENT_ID"),
        lambda: lifecycle("unit.arrived", "CALL_ID", "EVENT_ID"),
        lambda: lifecycle("call.closed", "CALL_ID", "EVENT_ID"),
        lambda: lifecycle("triage.overridden", "CALL_ID", "EVENT_ID"),
    ]

    @st.composite
    def broken_event(draw: st.DrawFn) -> bytes:
        body = draw(st.sampled_from(templates))()
        for operation in draw(st.lists(st.sampled_from(("replace", "drop", "add", "plant")), min_size=1, max_size=3)):
            field = draw(st.sampled_from(sorted(body))) if body else "type"
            if operation == "replace":
                body[field] = draw(values)
            elif operation == "drop":
                body.pop(field, None)
            elif operation == "add":
                body[draw(st.text(min_size=1, max_size=20))] = draw(values)
            else:  # personal data where it belongs (the phone, the reason), or where it must never be echoed
                planted = draw(st.sampled_from([PLANTED_PHONE, PLANTED_TEXT]))
                where = draw(st.sampled_from(("its field", "an unknown field", "a field name")))
                if where == "its field" and ("caller_phone" in body or "reason" in body):
                    body["caller_phone" if "caller_phone" in body else "reason"] = planted
                elif where == "a field name":
                    body[planted] = draw(values)
                else:
                    body[draw(st.sampled_from(("note", "comments", "caller")))] = planted
        return _dumps(body)

    @st.composite
    def odd_text_event(draw: st.DrawFn) -> bytes:
        text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=70)
        body = received("CALL_ID", "EVENT_ID", district=draw(text), nature_code=draw(text), center_id=draw(text))
        return _dumps(body)

    documents = values.map(_dumps)
    raw = st.binary(max_size=300)
    records = st.tuples(
        st.one_of(broken_event(), odd_text_event(), documents, raw),
        st.one_of(st.none(), st.just(b"CALL_ID"), st.binary(max_size=40)),
    )
    found: list[tuple[bytes, bytes | None]] = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(records)
    def collect(record: tuple[bytes, bytes | None]) -> None:
        found.append(record)

    collect()
    out = []
    for index, (value, key) in enumerate(found):
        call_id, event_id = f"{tag}-f{index}", f"{tag}-f{index}-e"
        value = value.replace(b'"CALL_ID"', json.dumps(call_id).encode()).replace(
            b'"EVENT_ID"', json.dumps(event_id).encode())
        out.append(HostileRecord(call_id.encode() if key == b"CALL_ID" else key, value, f"fuzz-{index}"))
    return out
