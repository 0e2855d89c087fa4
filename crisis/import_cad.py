"""`crisis import-cad`: read a CAD calls-for-service export with a mapping file, write or publish events.

The conversion itself is pure (``domain.cad_export``); this module reads the files, reports
progress, and hands the events to a file or to ``crisis.calls.v1``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from domain.cad_export import Conversion, ExportConverter, ImportedEvent
from domain.cad_mapping import CadMapping
from domain.policy import load_toml_model
from schemas.calls import encode_call_event


class CadImportError(ValueError):
    """A mapping or export that cannot be used at all; the message says which file and why."""


def load_mapping(path: Path) -> CadMapping:
    """Load and validate a mapping file; ``CadImportError`` names the file and every problem."""
    return load_toml_model(path, CadMapping, "mapping file", CadImportError)


@dataclass(frozen=True)
class OutgoingCallEvent:
    """An imported event ready to publish, keyed by its call id (``crisis.publish.OutgoingEvent``)."""

    key: str
    value: bytes
    occurred_at: datetime


def outgoing(events: list[ImportedEvent]) -> list[OutgoingCallEvent]:
    """The events as records to publish, keyed by call id, in the compact encoding."""
    return [OutgoingCallEvent(e.call_id, encode_call_event(e), e.occurred_at) for e in events]


class _CountingLines:
    """Iterates a text file's lines while counting the bytes read, for a progress bar."""

    def __init__(self, handle: IO[str], encoding: str) -> None:
        self.handle = handle
        self.encoding = encoding
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.handle:
            self.bytes_read += len(line.encode(self.encoding, "replace"))
            yield line


def convert_export(path: Path, mapping: CadMapping,
                   on_progress: Callable[[int], None] | None = None) -> Conversion:
    """Read ``path`` (CSV) and convert it; ``on_progress`` gets the bytes read so far."""
    try:
        handle = path.open(encoding=mapping.csv.encoding, newline="")
    except OSError as exc:
        raise CadImportError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        lines = _CountingLines(handle, mapping.csv.encoding)
        reader = csv.DictReader(lines, delimiter=mapping.csv.delimiter)
        try:
            header = [name.strip() for name in reader.fieldnames or []]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CadImportError(f"{path}: cannot read the header: {exc}") from exc
        missing = sorted(mapping.columns() - set(header))
        if missing:
            raise CadImportError(f"{path} has no column(s) {missing} that mapping {mapping.name!r} reads "
                               f"(its header: {header})")

        def rows() -> Iterator[tuple[int, dict[str, str | None]]]:
            """The export's rows with the line each starts on (a quoted cell may span lines)."""
            start = reader.line_num + 1
            try:
                for row in reader:
                    yield start, row
                    start = reader.line_num + 1
                    if on_progress is not None and reader.line_num % 500 == 0:
                        on_progress(lines.bytes_read)
            except (UnicodeDecodeError, csv.Error) as exc:
                raise CadImportError(f"{path}, line {start}: {exc}") from exc

        result = ExportConverter(mapping).convert(rows())
        if on_progress is not None:
            on_progress(lines.bytes_read)
        return result


def write_events(events: list[ImportedEvent], out: Path) -> None:
    """JSON lines in time order, one event per line, as ``crisis replay`` and ``crisis triage`` read them."""
    with out.open("wb") as handle:
        for event in events:
            handle.write(encode_call_event(event) + b"\n")
