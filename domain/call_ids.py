"""Call and event identity for everything that enters through an integration (README, "For
dispatch-center integrators").

- A call id is ``<center_id>:<the center's own incident number>``: globally unique, and a
  center can only ever write its own calls (the ingest service checks the prefix).
- Event ids are derived from the export's or document's own identifiers (``<call_id>:received``,
  ``<call_id>:dispatched:<unit>:<time>``), so the same input always yields the same ids and the
  worker, which stores each event id once, absorbs a second import or an overlapping export.
- Ids are at most 128 characters (the event models' limit): a longer natural id is replaced by a
  UUIDv5 of it, still deterministic.
"""

from __future__ import annotations

from datetime import UTC, datetime

from domain.triage import deterministic_id

MAX_ID_LENGTH = 128
CENTER_SEPARATOR = ":"


def scoped_call_id(center_id: str, incident_number: str) -> str:
    """``<center_id>:<incident_number>``; raises ``ValueError`` for an empty incident number."""
    incident = incident_number.strip()
    if not incident:
        raise ValueError("the incident number is empty")
    call_id = f"{center_id}{CENTER_SEPARATOR}{incident}"
    if len(call_id) <= MAX_ID_LENGTH:
        return call_id
    return f"{center_id}{CENTER_SEPARATOR}{deterministic_id('incident', center_id, incident)}"


def lifecycle_event_id(call_id: str, *parts: str) -> str:
    """``<call_id>:<part>:<part>...``, or a UUIDv5 of it when that is longer than 128 characters."""
    natural = CENTER_SEPARATOR.join((call_id, *parts))
    return natural if len(natural) <= MAX_ID_LENGTH else deterministic_id("event", natural)


def belongs_to_center(call_id: str, center_id: str) -> bool:
    """Whether ``call_id`` is one of ``center_id``'s calls (starts with ``<center_id>:``)."""
    return call_id.startswith(center_id + CENTER_SEPARATOR) and len(call_id) > len(center_id) + 1


def compact_time(moment: datetime) -> str:
    """A UTC instant as it appears in event ids: ``20261102T150000Z``."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
