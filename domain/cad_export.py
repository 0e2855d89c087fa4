"""A CAD calls-for-service export turned into our lifecycle events, by its mapping (``domain.cad_mapping``).

Pure: rows in, events and problems out (``crisis.import_cad`` reads the file and writes or
publishes the events). Identity (``domain.call_ids``): call id ``<center_id>:<incident number>``,
event ids from the export's own identifiers, so importing a file twice, or an overlapping later
export, yields the same ids and stores nothing twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import ValidationError

from domain.cad_mapping import CadMapping, TimeSpec, UnitListsSpec, UnitsSpec, UnitTypeSpec
from domain.call_ids import compact_time, lifecycle_event_id, scoped_call_id
from schemas.calls import CallClosed, CallReceived, Disposition, UnitArrived, UnitDispatched, UnitType

ImportedEvent = CallReceived | UnitDispatched | UnitArrived | CallClosed


class RowError(ValueError):
    """A value in a row that cannot be used; the message names the column."""


@dataclass(frozen=True)
class RowProblem:
    """A row (or part of one) that could not be used: its line in the file and why."""

    line: int
    message: str


@dataclass
class ImportSummary:
    """What an import produced, and how many rows it could not use."""

    rows: int = 0
    rows_rejected: int = 0
    calls: int = 0
    dispatches: int = 0
    arrivals: int = 0
    closes: int = 0
    problems: int = 0

    def as_dict(self) -> dict[str, int]:
        """The summary as printed by `crisis import-cad`."""
        return {"rows": self.rows, "rows_rejected": self.rows_rejected, "calls": self.calls,
                "dispatches": self.dispatches, "arrivals": self.arrivals, "closes": self.closes,
                "problems": self.problems}


@dataclass
class Conversion:
    """Events in time order (a call's own events in lifecycle order), problems by line, a summary."""

    events: list[ImportedEvent] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    summary: ImportSummary = field(default_factory=ImportSummary)


@dataclass(frozen=True)
class _UnitTimes:
    unit_id: str
    unit_type: UnitType
    dispatched: list[datetime]
    arrived: list[datetime]
    cleared: list[datetime]


_STEP_ORDER = {"call.received": 0, "unit.dispatched": 1, "unit.arrived": 2, "call.closed": 3}


class ExportConverter:
    """Applies one ``CadMapping`` to an export's rows."""

    def __init__(self, mapping: CadMapping) -> None:
        self.mapping = mapping
        self.zone = mapping.zone
        self._null = mapping.csv.null_values

    def clean(self, row: Mapping[str, str | None]) -> dict[str, str]:
        """Cells stripped; null markers (``NULL``, empty) dropped, so a missing value is absent."""
        cleaned: dict[str, str] = {}
        for key, value in row.items():
            if key is None or value is None:
                continue
            text = value.strip()
            if text not in self._null:
                cleaned[key.strip()] = text
        return cleaned

    def convert(self, rows: Iterable[tuple[int, Mapping[str, str | None]]]) -> Conversion:
        """Convert ``(line number, row)`` pairs; rows of one call are grouped by incident number."""
        result = Conversion()
        calls: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for line, raw in rows:
            result.summary.rows += 1
            row = self.clean(raw)
            incident = self.mapping.call.incident_number.read(row)
            if incident is None:
                self._reject(result, [line], f"no incident number ({self.mapping.call.incident_number.describe()})")
                continue
            group = calls.setdefault(incident, [])
            if group and self.mapping.layout == "call_rows":
                self._reject(result, [line], f"incident {incident!r} already on line {group[0][0]} "
                                             "(one row per call: the first is used)")
                continue
            group.append((line, row))
        for incident, group in calls.items():
            self._convert_call(result, incident, group)
        result.events.sort(key=lambda e: (e.occurred_at, e.call_id, _STEP_ORDER[e.type], e.event_id))
        result.summary.problems = len(result.problems)
        return result

    def _reject(self, result: Conversion, lines: list[int], message: str) -> None:
        result.summary.rows_rejected += len(lines)
        result.problems.append(RowProblem(lines[0], message))

    # -- one call ----------------------------------------------------------------------------

    def _convert_call(self, result: Conversion, incident: str, group: list[tuple[int, dict[str, str]]]) -> None:
        mapping, spec = self.mapping, self.mapping.call
        lines = [line for line, _ in group]
        first_line, first = group[0]
        # With one row per unit, a call's own values may be missing on some rows: take the first given.
        values = {name: next((v for _, row in group if (v := value.read(row)) is not None), None)
                  for name in ("nature_code", "district", "mpds_code", "incident_type_common", "caller_phone")
                  if (value := getattr(spec, name)) is not None}
        problems: list[RowProblem] = []
        try:
            call_id = scoped_call_id(mapping.center_id, incident)
            if spec.received_at == "first_dispatch":
                units = self._units(group, None, problems)
                received_at = self._first_dispatch(units)
            else:
                received_at = self._received_at(spec.received_at, first)
                units = self._units(group, received_at, problems)
            nature_code = values["nature_code"]
            if nature_code is None:
                raise RowError(f"no nature code ({spec.nature_code.describe()})")
            district = values["district"]
            if district is None:
                raise RowError(f"no district ({spec.district.describe()}) and no default")
            body: dict[str, Any] = {
                "type": "call.received", "event_id": lifecycle_event_id(call_id, "received"),
                "call_id": call_id, "occurred_at": received_at, "center_id": mapping.center_id,
                "nature_code": nature_code, "district": district,
            }
            for name in ("mpds_code", "incident_type_common", "caller_phone"):
                if values.get(name) is not None:
                    body[name] = values[name]
            received = CallReceived.model_validate(body)
        except (RowError, ValueError) as exc:
            self._reject(result, lines, _message(exc))
            result.problems.extend(problems)
            return
        events: list[ImportedEvent] = [received]
        for unit in units:
            for kind, moments in (("dispatched", unit.dispatched), ("arrived", unit.arrived)):
                for moment in moments:
                    if moment < received_at:
                        problems.append(RowProblem(first_line, f"unit {unit.unit_id} {kind} at {moment.isoformat()}, "
                                                               "before the call was received: left out"))
                        continue
                    model = UnitDispatched if kind == "dispatched" else UnitArrived
                    events.append(model(event_id=lifecycle_event_id(call_id, kind, unit.unit_id, compact_time(moment)),
                                        call_id=call_id, occurred_at=moment, unit_id=unit.unit_id,
                                        unit_type=unit.unit_type))
        closed = self._close(group, call_id, received_at, units, problems)
        if closed is not None:
            events.append(closed)
        result.events.extend(events)
        result.problems.extend(problems)
        summary = result.summary
        summary.calls += 1
        summary.dispatches += sum(1 for e in events if e.type == "unit.dispatched")
        summary.arrivals += sum(1 for e in events if e.type == "unit.arrived")
        summary.closes += 1 if closed is not None else 0

    def _first_dispatch(self, units: list[_UnitTimes]) -> datetime:
        firsts = [unit.dispatched[0] for unit in units if unit.dispatched]
        if not firsts:
            raise RowError("no dispatch time to date the call (received_at = 'first_dispatch')")
        # Lists keep the CAD's order, so the first listed dispatch is the call's start; with one
        # unit per row, the earliest.
        return firsts[0] if self.mapping.units and self.mapping.units.lists else min(firsts)

    def _received_at(self, spec: TimeSpec, row: dict[str, str]) -> datetime:
        moment = self._time(spec, row, None)
        if moment is None:
            raise RowError(f"no received time ({_time_source(spec)})")
        return moment

    def _close(self, group: list[tuple[int, dict[str, str]]], call_id: str, received_at: datetime,
               units: list[_UnitTimes], problems: list[RowProblem]) -> CallClosed | None:
        spec = self.mapping.close
        if spec is None:
            return None
        line, row = group[0]
        try:
            if spec.at == "last_clear":
                clears = [moment for unit in units for moment in unit.cleared]
                at = max(clears) if clears else None
            else:
                at = self._time(spec.at, row, received_at)
        except RowError as exc:
            problems.append(RowProblem(line, f"{exc}: call.closed left out"))
            return None
        if at is None:
            return None  # not closed in this export (yet)
        if at < received_at:
            problems.append(RowProblem(line, f"closed at {at.isoformat()}, before the call was received: "
                                             "call.closed left out"))
            return None
        disposition = next((v for _, r in group if (v := spec.disposition.read(r)) is not None), None)
        if disposition is None or disposition not in Disposition.__members__.values():
            shown = "no disposition" if disposition is None else f"disposition {disposition!r}"
            problems.append(RowProblem(line, f"{shown} ({spec.disposition.describe()}) maps to none of ours "
                                             "(add it to close.disposition.map): call.closed left out"))
            return None
        return CallClosed(event_id=lifecycle_event_id(call_id, "closed"), call_id=call_id, occurred_at=at,
                          disposition=Disposition(disposition))

    # -- units -------------------------------------------------------------------------------

    def _units(self, group: list[tuple[int, dict[str, str]]], received_at: datetime | None,
               problems: list[RowProblem]) -> list[_UnitTimes]:
        """The call's units and their times (``received_at`` is ``None`` while it comes from them)."""
        units_spec = self.mapping.units
        if units_spec is None:
            return []
        if units_spec.lists is not None:
            line, row = group[0]
            return self._list_units(units_spec, units_spec.lists, line, row, received_at, problems)
        columns = units_spec.columns
        assert columns is not None
        found: list[_UnitTimes] = []
        for line, row in group:
            unit_id = columns.unit_id.read(row)
            if unit_id is None:
                if self.mapping.layout == "unit_rows":
                    problems.append(RowProblem(line, f"no unit id ({columns.unit_id.describe()}): row left out"))
                continue
            unit_type = self._unit_type(units_spec.types, unit_id, row)
            if unit_type is None:
                problems.append(RowProblem(line, f"unit {unit_id}: no unit type (set [units.types]): left out"))
                continue
            times: dict[str, list[datetime]] = {"dispatched": [], "arrived": [], "cleared": []}
            for kind, moments in times.items():
                spec = getattr(columns, kind)
                if spec is None:
                    continue
                try:
                    moment = self._time(spec, row, received_at)
                except RowError as exc:
                    problems.append(RowProblem(line, f"unit {unit_id} {kind}: {exc}: left out"))
                    continue
                if moment is not None:
                    moments.append(moment)
            found.append(_UnitTimes(unit_id, unit_type, times["dispatched"], times["arrived"], times["cleared"]))
        return found

    def _list_units(self, units_spec: UnitsSpec, spec: UnitListsSpec, line: int, row: dict[str, str],
                    received_at: datetime | None, problems: list[RowProblem]) -> list[_UnitTimes]:
        try:
            day_moment = self._local_time(spec.date, row)
        except RowError as exc:
            problems.append(RowProblem(line, f"{exc}: unit times left out"))
            return []
        if day_moment is None:
            problems.append(RowProblem(line, f"no date for the unit times ({_time_source(spec.date)})"))
            return []
        day = day_moment.date()
        entries: dict[str, dict[str, list[time]]] = {}
        for kind in ("dispatched", "arrived", "cleared"):
            column = getattr(spec, kind)
            if column is None or column not in row:
                continue
            for unit_id, moment in self._list_entries(spec, column, row[column], line, problems):
                entries.setdefault(unit_id, {"dispatched": [], "arrived": [], "cleared": []})[kind].append(moment)
        # Midnight rollover is judged against the call's start: its received time, or else the first
        # listed dispatch (the CAD lists in time order).
        reference = received_at
        if reference is None:
            first = next(iter(self._list_entries(spec, spec.dispatched, row.get(spec.dispatched, ""), line, [])), None)
            reference = datetime.combine(day, first[1], self.zone).astimezone(UTC) if first else None
        found = []
        for unit_id, kinds in entries.items():
            unit_type = self._unit_type(units_spec.types, unit_id, row)
            if unit_type is None:
                problems.append(RowProblem(line, f"unit {unit_id}: no unit type (set [units.types]): left out"))
                continue
            times = {kind: [self._on_day(day, t, reference, spec) for t in moments] for kind, moments in kinds.items()}
            found.append(_UnitTimes(unit_id, unit_type, times["dispatched"], times["arrived"], times["cleared"]))
        return found

    def _list_entries(self, spec: UnitListsSpec, column: str, text: str, line: int,
                      problems: list[RowProblem]) -> Iterable[tuple[str, time]]:
        for entry in text.split(spec.entry_separator):
            entry = entry.strip()
            if not entry:
                continue
            unit_id, sep, clock = entry.partition(spec.pair_separator)
            unit_id, clock = unit_id.strip(), clock.strip()
            if not sep or not unit_id:
                problems.append(RowProblem(line, f"column {column!r}: {entry!r} is not UNIT{spec.pair_separator}TIME"))
                continue
            parsed = _parse_clock(clock, spec.time_formats)
            if parsed is None:
                problems.append(RowProblem(line, f"column {column!r}: time {clock!r} of unit {unit_id} matches "
                                                 f"none of {list(spec.time_formats)}"))
                continue
            yield unit_id, parsed

    def _on_day(self, day: date, clock: time, reference: datetime | None, spec: UnitListsSpec) -> datetime:
        """A time of day of the call's date, in UTC; on the next day when midnight has passed."""
        moment = datetime.combine(day, clock, self.zone).astimezone(UTC)
        if reference is not None and moment < reference - timedelta(minutes=spec.rollover_tolerance_minutes):
            moment = datetime.combine(day + timedelta(days=1), clock, self.zone).astimezone(UTC)
        return moment

    def _unit_type(self, spec: UnitTypeSpec, unit_id: str, row: dict[str, str]) -> UnitType | None:
        if spec.column is not None and (value := row.get(spec.column)) is not None:
            return spec.values.get(value, spec.values.get(value.upper()))
        for rule in spec.rules:
            if re.fullmatch(rule.pattern, unit_id, re.IGNORECASE):
                return rule.type
        return spec.default

    # -- times -------------------------------------------------------------------------------

    def _time(self, spec: TimeSpec, row: dict[str, str], received_at: datetime | None) -> datetime | None:
        """The time ``spec`` gives for ``row``, in UTC (so differences are elapsed seconds, DST included);
        ``None`` when its cell is empty; ``RowError`` when it cannot be read."""
        if spec.seconds_after_received is not None:
            seconds = _seconds(row, spec.seconds_after_received)
            if seconds is None:
                return None
            if received_at is None:
                raise RowError(f"column {spec.seconds_after_received!r} is relative to the received time")
            return received_at.astimezone(UTC) + timedelta(seconds=seconds)
        moment = self._local_time(spec, row)
        return None if moment is None else moment.astimezone(UTC)

    def _local_time(self, spec: TimeSpec, row: dict[str, str]) -> datetime | None:
        """A column or template time as written, placed in the mapping's zone when it has no offset."""
        if spec.column is not None:
            text = row.get(spec.column)
            if text is None:
                return None
        else:
            try:
                text = (spec.template or "").format_map(_Strict(row))
            except KeyError:
                return None
        if spec.compiled_regex is not None:
            match = spec.compiled_regex.search(text)
            if match is None:
                raise RowError(f"{_time_source(spec)}: {text!r} does not contain a time matching {spec.regex!r}")
            text = match.group(1) if match.groups() else match.group(0)
        for fmt in spec.formats:
            try:
                parsed = datetime.strptime(text, fmt)  # noqa: DTZ007 - the zone is added just below
            except ValueError:
                continue
            moment = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=self.zone)
            if spec.plus_seconds_column is not None:
                extra = _seconds(row, spec.plus_seconds_column)
                if extra is None:
                    return None
                # Seconds on the local clock (e.g. since local midnight): add before placing in the zone.
                moment = (moment.replace(tzinfo=None) + timedelta(seconds=extra)).replace(tzinfo=moment.tzinfo)
            return moment
        raise RowError(f"{_time_source(spec)}: {text!r} matches none of the formats {list(spec.formats)}")


class _Strict(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def _seconds(row: dict[str, str], column: str) -> float | None:
    text = row.get(column)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise RowError(f"column {column!r}: {text!r} is not a number of seconds") from exc


def _parse_clock(text: str, formats: tuple[str, ...]) -> time | None:
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).time()  # noqa: DTZ007 - a time of day, placed in the zone later
        except ValueError:
            continue
    return None


def _time_source(spec: TimeSpec) -> str:
    if spec.seconds_after_received is not None:
        return f"column {spec.seconds_after_received!r}"
    source = f"column {spec.column!r}" if spec.column is not None else f"template {spec.template!r}"
    return source + (f" plus column {spec.plus_seconds_column!r}" if spec.plus_seconds_column else "")


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(call)'}: {e['msg']}"
                         for e in exc.errors(include_url=False, include_input=False))
    return str(exc)
