"""The fault-injection suite's own parts: the personal-data scanner, the checker, the ground truth and the proxy."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime

import pytest

from agents.decoding import InboundRecord
from crisis.chaos.checker import Verdict, check_store, check_topic
from crisis.chaos.pii_scan import PersonalDataScanner
from crisis.chaos.proxy import TcpProxy
from crisis.chaos.reference import Expected, expected_outcome
from crisis.chaos.stream import build_stream
from domain.policy import load_policy
from sinks.verification import StoredDecision, StoredState
from streams import topics
from streams.config import Settings

T = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


def test_the_scanner_finds_a_phone_number_in_any_format_and_free_text_by_its_token() -> None:
    scanner = PersonalDataScanner(["314.555.0142"], ["Spoke with Osric Fennimore, ref FT0123456789"])
    for text in ('{"x": "+1 (314) 555-0142"}', "digits 13145550142 here", "3145550142", "314 555 0142",
                 "note: ref FT0123456789", "Osric Fennimore called"):
        assert scanner.scan("out", text), text
    hit = scanner.scan("partner topic", "xx +13145550142")[0]
    assert (hit.source, hit.kind, hit.offset) == ("partner topic", "phone", 3)
    assert "0142" not in repr(hit), "a report of a leak must not leak"
    harmless = ('{"event_id": "6f1d3c1e-5a4b-4e58-9a7c-2f0c8d1e7b90",'
                ' "occurred_at": "2025-01-06T06:00:52.175313+00:00", "person_ref": "a1b2c3d4e5f601234567",'
                ' "arrival_seconds": 412.3456789, "offset": 1314555014299991}'
                " crisis_batch_duration_seconds_sum 2.0547923456789e+06 ref FT9999999999")
    assert scanner.scan("out", harmless) == []


def _expected() -> Expected:
    expected = Expected()
    expected.calls = {"c1": ("c1-0", "ref1"), "c2": ("c2-0", None)}
    expected.decisions = {"d1": ("c1", "triage.decided"), "d2": ("c2", "triage.decided")}
    expected.current = {"c1": "d1", "c2": "d2"}
    expected.lifecycle = {"c1-1"}
    expected.timer_events = {"t1": ("sla_arrival", "sla.warning", "c1")}
    expected.dead_letters = {"x1": (0, 7, "invalid_json")}
    return expected


def _stored() -> StoredState:
    return StoredState(
        calls={"c1": ("c1-0", "ref1"), "c2": ("c2-0", None)},
        decisions=[StoredDecision("d1", "c1", "triage.decided", T, "co_responder", "c1-0"),
                   StoredDecision("d2", "c2", "triage.decided", T, "emergency", "c2-0")],
        current={"c1": ["d1"], "c2": ["d2"]},
        lifecycle=["c1-1"],
        timer_events={"t1": ("sla_arrival", "sla.warning", "c1")},
        dead_letters={"x1": (0, 7, "invalid_json")},
    )


def test_the_checker_passes_the_expected_outcome_and_names_every_kind_of_difference() -> None:
    assert check_store(_expected(), _stored()).ok
    stored = _stored()
    stored.lifecycle = []  # lost
    stored.decisions.append(StoredDecision("d9", "c2", "triage.decided", T, "diversion_line", "c2-9"))  # twice
    stored.current["c2"] = ["d2", "d9"]  # two current decisions
    stored.calls["c1"] = ("c1-0", "another-ref")  # mismatched
    stored.dead_letters = {"x1": (0, 7, "unknown_type")}  # another reason
    verdict = check_store(_expected(), stored)
    assert not verdict.ok
    assert verdict.lost["lifecycle_events"] == 1
    assert verdict.unexpected["decisions"] == 1 and verdict.duplicated["decisions"] == 1
    assert verdict.duplicated["current_decisions"] == 1
    assert verdict.mismatched["calls"] == 1 and verdict.mismatched["dead_letters"] == 1
    assert any("c1-1" in problem for problem in verdict.problems)


def test_topic_check_drops_identical_duplicates_and_fails_on_conflicts() -> None:
    letter = {"event_id": "x1", "reason": "invalid_json", "dead_lettered_at": "2025-01-06T12:00:00+00:00"}
    replayed = {**letter, "dead_lettered_at": "2025-01-06T12:00:09+00:00"}  # written again after a crash
    verdict = Verdict()
    check = check_topic(verdict, "dead letters", [json.dumps(letter).encode(), json.dumps(replayed).encode()],
                        {"x1"})
    assert (check.identical_duplicates, check.ok) == (1, True)
    check = check_topic(verdict, "triage", [b'{"event_id": "d1", "route": "emergency"}',
                                            b'{"event_id": "d1", "route": "co_responder"}',
                                            b'{"event_id": "d7"}'], {"d1", "d2"})
    assert (check.conflicting_duplicates, check.missing, check.phantom, check.ok) == (1, 1, 1, False)


async def test_the_ground_truth_does_not_depend_on_where_batches_end() -> None:
    """Why a run under faults must match it exactly: event-time deadlines make batches irrelevant."""
    policy = load_policy()
    stream = build_stream(policy, 2500, seed=3, run_tag="gt")
    assert [e.value for e in build_stream(policy, 2500, seed=3, run_tag="gt").events] == [e.value for e in
                                                                                          stream.events]
    records = [InboundRecord(topics.CALLS, index % 4, index // 4, e.key.encode(), e.value)
               for index, e in enumerate(stream.events)]
    settings = Settings(pseudonym_key="k", timer_lateness_seconds=6 * 3600)
    one = await expected_outcome(records, settings, policy, batch_size=1000)
    other = await expected_outcome(reversed(records), settings, policy, batch_size=37)
    assert one.counts() == other.counts() and one.timer_events == other.timer_events and one.timers == other.timers
    assert one.counts()["timer_events"] > 100 and one.counts()["dead_letters"] >= 2
    assert len(stream.phones) > 100 and stream.free_texts


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


def _roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(1024)


async def test_the_proxy_forwards_then_cuts_both_ways_then_restores() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = TcpProxy(port).start()

    def scenario() -> None:
        first = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        assert _roundtrip(first, b"hello") == b"hello"
        proxy.cut("reset")
        with pytest.raises(OSError):  # reset (or closed) at once
            _roundtrip(first, b"x") or _roundtrip(first, b"x")
        with pytest.raises(OSError):
            _roundtrip(socket.create_connection(("127.0.0.1", proxy.port), timeout=5), b"x") or \
                _roundtrip(socket.create_connection(("127.0.0.1", proxy.port), timeout=5), b"x")
        proxy.restore()
        second = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        assert _roundtrip(second, b"again") == b"again"
        proxy.cut("blackhole")
        second.settimeout(1)
        with pytest.raises(TimeoutError):  # nothing answers, nothing says so
            _roundtrip(second, b"lost")
        proxy.restore()
        with pytest.raises(OSError):  # the connection that lived through the partition is reset
            _roundtrip(second, b"x") or _roundtrip(second, b"x")
        third = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        assert _roundtrip(third, b"back") == b"back"

    try:
        await asyncio.to_thread(scenario)
    finally:
        proxy.stop()
        server.close()


def test_the_reliability_table_replaces_what_is_between_the_readme_markers(tmp_path) -> None:
    from crisis.chaos.report import BEGIN, END, markdown_table, write_readme_section

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Reliability\n\n{BEGIN}\nold table\n{END}\n\n## Tests\n")
    summary = {"scenario": "worker_crash", "events_sent": 100_000, "faults": 6, "lost": 0, "unexpected": 0,
               "mismatched": 0, "duplicated": 0, "dead_lettered": 150, "dead_letters_expected": 150,
               "duplicates_dropped_by_consumers": 42, "recovery_seconds_median": 4.5, "recovery_seconds_max": 7.25,
               "personal_data_hits": 0, "passed": True}
    write_readme_section(readme, markdown_table([summary, {"scenario": "cluster_leader_kill", "error": "boom"}],
                                                {"worker_crash": "kills"}))
    text = readme.read_text()
    assert "old table" not in text and text.endswith("## Tests\n") and text.count(BEGIN) == 1
    assert "| worker_crash | kills | 100,000 | 6 | 0 | 0 | 150 (150) | 42 | 4.5 / 7.25 | 0 | passed |" in text
    assert "**error**: boom" in text
