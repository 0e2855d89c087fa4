"""`crisis replay`: publish a recorded JSON-lines file of call events, in file order, keyed by call id.

The file is streamed: lines are read, checked and handed to ``crisis.publish.publish_events`` one
at a time, so a file of a million events never sits in memory.

A *bad line* is one that is not a JSON object with a non-empty string ``call_id`` (what the
pipeline's schema requires). Bad lines are never skipped silently: each is reported with its line
number, and by default it is still published, keyed by null, so the pipeline dead-letters it with
its reason, exactly as it would the live record. ``strict`` checks the whole file first and
publishes nothing if any line is bad.

Records carry no explicit timestamp (the broker's clock stamps them): brokers apply time-based
retention to record timestamps, so stamping last year's recording with its event times could see
it deleted right after the replay. The pipeline reads event time from ``occurred_at`` anyway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from crisis.publish import publish_events


@dataclass(frozen=True)
class ParsedLine:
    """One line of the file: its 1-based number, its key (``None`` for a bad line) and the bytes to publish."""

    number: int
    key: str | None
    value: bytes
    problem: str | None = None

    @property
    def bad(self) -> bool:
        return self.problem is not None


def parse_line(number: int, raw: bytes) -> ParsedLine:
    """Check one line (its terminator already removed or not) and find the key to publish it with."""
    value = raw.rstrip(b"\n")
    if value.endswith(b"\r"):
        value = value[:-1]
    if not value.strip():
        return ParsedLine(number, None, value, "empty line")
    try:
        body = json.loads(value)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return ParsedLine(number, None, value, f"not JSON: {exc}")
    if not isinstance(body, dict):
        return ParsedLine(number, None, value, f"not a JSON object (a JSON {type(body).__name__})")
    if "call_id" not in body:
        return ParsedLine(number, None, value, "no call_id")
    call_id = body["call_id"]
    if not isinstance(call_id, str):
        return ParsedLine(number, None, value, f"call_id is not a string (a JSON {type(call_id).__name__})")
    # The pipeline strips whitespace from ids: the key must match the call id it will see.
    call_id = call_id.strip()
    if not call_id:
        return ParsedLine(number, None, value, "call_id is empty")
    return ParsedLine(number, call_id, value)


def parse_lines(lines: Iterable[bytes]) -> Iterator[ParsedLine]:
    """Every line, numbered from 1, good or bad, in order."""
    for number, raw in enumerate(lines, start=1):
        yield parse_line(number, raw)


def bad_lines(path: Path) -> Iterator[ParsedLine]:
    """The bad lines of a file, streamed (for ``--strict``: check everything before publishing)."""
    with path.open("rb") as handle:
        yield from (line for line in parse_lines(handle) if line.bad)


@dataclass(frozen=True)
class ReplayEvent:
    """What ``publish_events`` needs from an event; ``key`` is ``None`` for a bad line."""

    key: str | None
    value: bytes
    occurred_at: datetime | None = None


class FileReader:
    """Streams a file's lines as events to publish, counting bad lines and bytes read as it goes."""

    def __init__(self, handle: BinaryIO, on_bad: Callable[[ParsedLine], None]) -> None:
        self.handle = handle
        self.on_bad = on_bad
        self.lines = 0
        self.bad_lines = 0
        self.bytes_read = 0

    def __iter__(self) -> Iterator[ReplayEvent]:
        for raw in self.handle:
            self.bytes_read += len(raw)
            line = parse_line(self.lines + 1, raw)
            self.lines += 1
            if line.key is None:
                self.bad_lines += 1
                self.on_bad(line)
                yield ReplayEvent(None, line.value)
            else:
                yield ReplayEvent(line.key, line.value)


@dataclass(frozen=True)
class ReplaySummary:
    events_published: int
    bad_lines: int
    elapsed_seconds: float

    def as_dict(self) -> dict[str, float | int]:
        elapsed = self.elapsed_seconds
        return {
            "events_published": self.events_published,
            "bad_lines": self.bad_lines,
            "elapsed_seconds": round(elapsed, 3),
            "events_per_second": round(self.events_published / elapsed, 1) if elapsed > 0 else 0.0,
        }


async def replay_file(
    path: Path,
    bootstrap: str,
    topic: str,
    rate_per_second: float | None = None,
    on_bad: Callable[[ParsedLine], None] = lambda line: None,
    on_progress: Callable[[int, int], None] | None = None,
    client_options: Mapping[str, Any] | None = None,
    idempotent: bool = True,
) -> ReplaySummary:
    """Publish every line of ``path`` to ``topic`` in file order; ``None`` rate: as fast as possible.

    ``on_progress(events_acknowledged, bytes_read)`` is called after each delivered chunk.
    """
    started = time.perf_counter()
    with path.open("rb") as handle:
        reader = FileReader(handle, on_bad)

        def progress(sent: int) -> None:
            if on_progress:
                on_progress(sent, reader.bytes_read)

        result = await publish_events(bootstrap, topic, reader, rate_per_second, on_progress=progress,
                                      client_options=client_options, idempotent=idempotent)
    return ReplaySummary(result.events, reader.bad_lines, time.perf_counter() - started)
