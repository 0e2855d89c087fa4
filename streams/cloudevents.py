"""CloudEvents on every record we produce: the Kafka protocol binding, binary content mode.

The value stays our plain JSON; the event's attributes travel as Kafka headers (``ce_`` prefix),
so a partner's CloudEvents SDK reads our records as CloudEvents without any change to the payload:
``ce_specversion`` 1.0, ``ce_id`` our deterministic event id, ``ce_source`` this deployment
(``CRISIS_EVENT_SOURCE``), ``ce_type`` the event's ``type``, ``ce_time`` its time (RFC 3339, UTC),
``ce_subject`` the call id, and ``content-type`` application/json.
(https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/kafka-protocol-binding.md)
"""

from __future__ import annotations

from datetime import UTC, datetime

Headers = tuple[tuple[str, bytes], ...]

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


_SPEC_VERSION_HEADER = ("ce_specversion", SPEC_VERSION.encode())
_CONTENT_TYPE_HEADER = ("content-type", CONTENT_TYPE.encode())


def cloudevent_headers(event_id: str, event_type: str, source: str, time: datetime, subject: str | None) -> Headers:
    """The binary-mode CloudEvents headers of one record."""
    if subject is None:
        return (_SPEC_VERSION_HEADER, ("ce_id", event_id.encode()), ("ce_source", source.encode()),
                ("ce_type", event_type.encode()), ("ce_time", time.astimezone(UTC).isoformat().encode()),
                _CONTENT_TYPE_HEADER)
    return (_SPEC_VERSION_HEADER, ("ce_id", event_id.encode()), ("ce_source", source.encode()),
            ("ce_type", event_type.encode()), ("ce_time", time.astimezone(UTC).isoformat().encode()),
            ("ce_subject", subject.encode()), _CONTENT_TYPE_HEADER)
