"""Worker logs: one JSON object a line for log collectors (the default), or plain text for a terminal.

``CRISIS_LOG_FORMAT=json|text``. A JSON line holds the time (UTC), level, logger and message, the
``call_id`` and ``event_id`` where a log line concerns one, and the traceback of an exception. Our
code never logs phone numbers or free text; exception messages are blanked of quoted values and
digit runs before they are logged (``agents.failures.describe``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Extra fields a log call may pass (``log.error(..., extra={"call_id": ...})``) that a JSON line keeps.
CONTEXT_FIELDS = ("call_id", "event_id", "kind", "topic", "partition", "offset")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def logging_config(log_format: str, level: str) -> dict[str, Any] | None:
    """The ``logging.config.dictConfig`` overrides for Faust's worker; ``None`` keeps its text output."""
    if log_format == "text":
        return None
    return {
        "merge": True,
        "formatters": {"json": {"()": "streams.logs.JsonFormatter"}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json", "level": level.upper(),
                                 "stream": "ext://sys.stdout"}},
    }
