"""The mapping file of a CAD calls-for-service export format (TOML, ``deploy/cad-mappings/``).

Every CAD exports differently: column names, time formats and zones, one row per call or one row
per unit, unit times in columns or as ``UNIT=HH:MM:SS, ...`` lists, unit ids that say whether a
unit is police, EMS or the co-responder team. ``CadMapping`` describes one format and is validated
on load, naming the field of any problem; ``domain.cad_export`` applies it to the rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.policy import TimeZoneName
from schemas.calls import Disposition, UnitType

Row = Mapping[str, str]


def _valid_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {pattern!r} ({exc})") from exc
    return pattern


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueSpec(_Spec):
    """Where a value comes from: a ``column``, a constant ``value``, or a ``hash_of`` columns (for an
    export without incident numbers). ``map`` translates export values; ``default`` fills an empty
    cell. A plain string is shorthand for ``{ column = "..." }``."""

    column: str | None = None
    value: str | None = None
    hash_of: tuple[str, ...] = ()
    map: dict[str, str] = Field(default_factory=dict)
    default: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"column": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> ValueSpec:
        sources = [self.column is not None, self.value is not None, bool(self.hash_of)]
        if sum(sources) != 1:
            raise ValueError("give exactly one of 'column', 'value' or 'hash_of'")
        return self

    def columns(self) -> set[str]:
        """The columns this reads (checked against the export's header before any row)."""
        return {self.column} if self.column is not None else set(self.hash_of)

    def describe(self) -> str:
        """Where the value comes from, for problem messages."""
        if self.column is not None:
            return f"column {self.column!r}"
        return f"columns {list(self.hash_of)}" if self.hash_of else "constant"

    def read(self, row: Row) -> str | None:
        """The value for ``row`` (already stripped, nulls as absent), mapped; ``None`` when empty."""
        if self.value is not None:
            found: str | None = self.value
        elif self.hash_of:
            joined = "\x1f".join(row.get(name) or "" for name in self.hash_of)
            found = "h" + hashlib.sha256(joined.encode()).hexdigest()[:16] if joined.strip("\x1f") else None
        else:
            found = row.get(self.column or "")
        if found is None:
            return self.default
        return self.map.get(found, found)


class TimeSpec(_Spec):
    """Where a time comes from. One of:

    - ``column`` (or ``template``, e.g. ``"{CALL_YEAR}-{CALL_MONTH}-{CALL_DAY}"``) parsed with
      ``formats`` (strptime, tried in order), optionally cut out of the cell by ``regex`` (its
      first group) and shifted by ``plus_seconds_column`` (e.g. seconds since midnight);
    - ``seconds_after_received``: a column holding seconds after the call was received.

    A time without an offset is read in the mapping's ``timezone``.
    """

    column: str | None = None
    template: str | None = None
    regex: Annotated[str, Field(min_length=1)] | None = None
    formats: tuple[str, ...] = ()
    plus_seconds_column: str | None = None
    seconds_after_received: str | None = None

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, pattern: str | None) -> str | None:
        return pattern if pattern is None else _valid_regex(pattern)

    @model_validator(mode="after")
    def _one_source(self) -> TimeSpec:
        sources = [self.column is not None, self.template is not None, self.seconds_after_received is not None]
        if sum(sources) != 1:
            raise ValueError("give exactly one of 'column', 'template' or 'seconds_after_received'")
        if self.seconds_after_received is None and not self.formats:
            raise ValueError("'formats' is required to read a time from a column or template")
        return self

    @cached_property
    def compiled_regex(self) -> re.Pattern[str] | None:
        """``regex`` compiled once."""
        return re.compile(self.regex) if self.regex else None

    def columns(self) -> set[str]:
        """The columns this reads (checked against the export's header before any row)."""
        names = set(re.findall(r"\{([^{}]+)\}", self.template or ""))
        for name in (self.column, self.plus_seconds_column, self.seconds_after_received):
            if name is not None:
                names.add(name)
        return names


class UnitTypeRule(_Spec):
    """A regular expression on unit ids (whole id, any case) and the unit type it means."""

    pattern: str
    type: UnitType

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str) -> str:
        return _valid_regex(pattern)


class UnitTypeSpec(_Spec):
    """Which units are the co-responder team, police or EMS: a type ``column`` translated by
    ``values``, else ``rules`` (regular expressions on the unit id, first match wins), else ``default``."""

    column: str | None = None
    values: dict[str, UnitType] = Field(default_factory=dict)
    rules: tuple[UnitTypeRule, ...] = ()
    default: UnitType | None = None


class UnitListsSpec(_Spec):
    """Units as lists in one row per call: ``M7=21:10:51, FIRT1=21:03:05`` (time of day), on ``date``."""

    date: TimeSpec
    dispatched: str
    arrived: str | None = None
    cleared: str | None = None
    time_formats: tuple[str, ...] = ("%H:%M:%S",)
    entry_separator: str = ","
    pair_separator: str = "="
    # A time of day earlier than the call's received time is on the next day (midnight passed),
    # unless it is at most this much earlier: then it is a time before the call, reported as such.
    rollover_tolerance_minutes: Annotated[float, Field(ge=0, le=720)] = 60


class UnitColumnsSpec(_Spec):
    """One unit per row (``layout = "unit_rows"``) or the call's one unit (``"call_rows"``), times in columns."""

    unit_id: ValueSpec
    dispatched: TimeSpec | None = None
    arrived: TimeSpec | None = None
    cleared: TimeSpec | None = None


class UnitsSpec(_Spec):
    """The export's units: ``lists`` or ``columns``, and which unit ids or types are which."""

    lists: UnitListsSpec | None = None
    columns: UnitColumnsSpec | None = None
    types: UnitTypeSpec = Field(default_factory=UnitTypeSpec)

    @model_validator(mode="after")
    def _one_mode(self) -> UnitsSpec:
        if (self.lists is None) == (self.columns is None):
            raise ValueError("give exactly one of [units.lists] or [units.columns]")
        return self


class CallSpec(_Spec):
    """Where the call's own values are: incident number, codes, district, phone, received time."""

    incident_number: ValueSpec
    nature_code: ValueSpec
    district: ValueSpec
    mpds_code: ValueSpec | None = None
    incident_type_common: ValueSpec | None = None
    caller_phone: ValueSpec | None = None  # personal data: stays in the internal topic and table
    received_at: TimeSpec | Literal["first_dispatch"]


class CloseSpec(_Spec):
    """``call.closed``: at the last unit's clear time or a time column, with a disposition that
    maps to one of ours (export values translated by ``disposition.map``)."""

    at: TimeSpec | Literal["last_clear"]
    disposition: ValueSpec


class CsvSpec(_Spec):
    """How the file is written: encoding, delimiter, and the cells that mean 'no value'."""

    encoding: str = "utf-8-sig"
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    null_values: frozenset[str] = frozenset({"", "NULL"})


class CadMapping(_Spec):
    """One export format: see ``deploy/cad-mappings/*.toml`` and the README's integrator section."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    center_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^:\s]+$")]
    timezone: TimeZoneName
    layout: Literal["call_rows", "unit_rows"] = "call_rows"
    csv: CsvSpec = Field(default_factory=CsvSpec)
    call: CallSpec
    units: UnitsSpec | None = None
    close: CloseSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CadMapping:
        if self.layout == "unit_rows" and (self.units is None or self.units.columns is None):
            raise ValueError("layout 'unit_rows' needs [units.columns] (one unit per row)")
        if self.call.received_at == "first_dispatch":
            if self.units is None:
                raise ValueError("received_at = 'first_dispatch' needs [units]")
            columns = self.units.columns
            if columns is not None and any(spec is not None and spec.seconds_after_received is not None
                                           for spec in (columns.dispatched, columns.arrived, columns.cleared)):
                raise ValueError("unit times in seconds after the call need a received_at column, not 'first_dispatch'")
        if self.close is not None and self.close.at == "last_clear":
            cleared = self.units is not None and (
                (self.units.lists is not None and self.units.lists.cleared is not None)
                or (self.units.columns is not None and self.units.columns.cleared is not None))
            if not cleared:
                raise ValueError("close.at = 'last_clear' needs unit clear times (units.*.cleared)")
        if self.close is not None:
            for value in self.close.disposition.map.values():
                if value not in Disposition.__members__.values():
                    raise ValueError(f"close.disposition.map: {value!r} is not one of {[d.value for d in Disposition]}")
        return self

    @cached_property
    def zone(self) -> ZoneInfo:
        """The time zone of every time in the export without an offset."""
        return ZoneInfo(self.timezone)

    def columns(self) -> set[str]:
        """Every column the mapping reads: they must all be in the export's header."""
        call = self.call
        names: set[str] = set()
        for value in (call.incident_number, call.nature_code, call.district, call.mpds_code,
                      call.incident_type_common, call.caller_phone):
            if value is not None:
                names |= value.columns()
        if isinstance(call.received_at, TimeSpec):
            names |= call.received_at.columns()
        if self.units is not None:
            if (lists := self.units.lists) is not None:
                names |= lists.date.columns() | {c for c in (lists.dispatched, lists.arrived, lists.cleared) if c}
            if (columns := self.units.columns) is not None:
                names |= columns.unit_id.columns()
                for spec in (columns.dispatched, columns.arrived, columns.cleared):
                    names |= spec.columns() if spec is not None else set()
            if self.units.types.column is not None:
                names.add(self.units.types.column)
        if self.close is not None:
            names |= self.close.disposition.columns()
            if isinstance(self.close.at, TimeSpec):
                names |= self.close.at.columns()
        return names
