"""What one batch builds inside its transaction, shared by the handlers and the pipeline."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from agents.decoding import InboundRecord, Refusal, dead_letter
from schemas.triage import TriageDecision
from sinks.base import BatchWrite


@dataclass
class BatchState:
    write: BatchWrite = field(default_factory=BatchWrite)
    latest: dict[str, TriageDecision] = field(default_factory=dict)  # each call's current decision
    consumed: Counter[str] = field(default_factory=Counter)  # events read, by type
    partitions: dict[str, int] = field(default_factory=dict)  # call id -> inbound partition (outputs follow it)
    # Codes no mapping recognised: (decision event id, center label, how many), counted once stored.
    unmapped_codes: list[tuple[str, str, int]] = field(default_factory=list)
    decided_events: set[str] = field(default_factory=set)  # call.received event ids this batch decided

    def reject(self, record: InboundRecord, refusal: Refusal, now: datetime) -> None:
        """Dead-letter ``record``: kept in Postgres with every byte, a copy on the dead-letter topic."""
        self.write.dead_letters.append(dead_letter(record, refusal, now))
