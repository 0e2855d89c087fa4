"""`crisis replay`'s line handling: which lines are bad, why, and what key each line is published with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crisis.replay import FileReader, ParsedLine, bad_lines, parse_line, parse_lines
from crisis.simulate import City, malformed_events
from domain.policy import load_policy


def test_a_good_line_is_keyed_by_its_call_id_and_published_unchanged():
    raw = b'{"type":"call.received","event_id":"e1","call_id":"c-1","occurred_at":"2026-11-02T06:00:00+00:00"}\n'
    line = parse_line(7, raw)
    assert line == ParsedLine(7, "c-1", raw.rstrip(b"\n"))
    assert not line.bad


def test_crlf_line_endings_are_not_part_of_the_value():
    assert parse_line(1, b'{"call_id":"c-1"}\r\n').value == b'{"call_id":"c-1"}'


def test_the_key_is_the_call_id_the_pipeline_will_see_after_stripping_whitespace():
    assert parse_line(1, b'{"call_id":"  c-1 "}').key == "c-1"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"{not json\n", "not JSON"),
        (b"\n", "empty line"),
        (b"   \r\n", "empty line"),
        (b'["call.received"]\n', "not a JSON object (a JSON list)"),
        (b'"just a string"\n', "not a JSON object (a JSON str)"),
        (b'{"type":"call.received","event_id":"e"}\n', "no call_id"),
        (b'{"call_id":42}\n', "call_id is not a string (a JSON int)"),
        (b'{"call_id":null}\n', "call_id is not a string (a JSON NoneType)"),
        (b'{"call_id":"   "}\n', "call_id is empty"),
        (b'\xff\xfe{"call_id":"c"}\n', "not JSON"),
    ],
)
def test_bad_lines_say_why_and_have_no_key(raw, problem):
    line = parse_line(3, raw)
    assert line.bad
    assert line.key is None
    assert line.problem is not None and line.problem.startswith(problem)
    assert line.number == 3
    # Published as recorded (without the line terminator), for the pipeline to dead-letter.
    assert line.value == raw.rstrip(b"\n").removesuffix(b"\r")


def test_lines_are_numbered_from_one_in_file_order():
    lines = list(parse_lines([b'{"call_id":"a"}\n', b"oops\n", b'{"call_id":"b"}']))
    assert [(line.number, line.key, line.bad) for line in lines] == [(1, "a", False), (2, None, True), (3, "b", False)]


def _simulated_file(tmp_path: Path, malformed: int) -> tuple[Path, int]:
    """The same bytes `crisis simulate --out` writes (one event per line, malformed ones included)."""
    events = City(load_policy(), seed=3).events(20) + list(malformed_events(malformed, 3))
    path = tmp_path / "calls.jsonl"
    path.write_bytes(b"".join(event.value + b"\n" for event in events))
    return path, len(events)


def test_a_simulated_file_has_no_bad_lines(tmp_path):
    path, _ = _simulated_file(tmp_path, malformed=0)
    assert list(bad_lines(path)) == []


def test_every_bad_line_is_reported_with_its_number_and_still_yielded_in_order(tmp_path):
    path, total = _simulated_file(tmp_path, malformed=7)
    reported: list[ParsedLine] = []
    with path.open("rb") as handle:
        reader = FileReader(handle, reported.append)
        events = list(reader)

    assert len(events) == total == reader.lines  # nothing skipped
    assert reader.bytes_read == path.stat().st_size
    original = path.read_bytes().split(b"\n")[:-1]
    assert [event.value for event in events] == original  # file order, bytes unchanged

    # Of the 7 malformed samples, the empty line, bad JSON and the JSON array have no string call_id;
    # the others carry call_id "x" and are the pipeline's to reject (unknown type, missing fields...).
    bad_numbers = [line.number for line in reported]
    assert reader.bad_lines == len(reported) == 3
    assert [original[n - 1] for n in bad_numbers] == [b"{not json", b"", b'["call.received"]']
    assert bad_numbers == [line.number for line in bad_lines(path)]
    for number in bad_numbers:
        assert events[number - 1].key is None  # published keyed by null

    good = [event for index, event in enumerate(events, start=1) if index not in bad_numbers]
    assert all(event.key.encode() == json.loads(event.value)["call_id"].encode() for event in good)
    assert all(event.occurred_at is None for event in events)  # the broker stamps the records
