"""The timers one transaction works on, for every kind: apply events, fire deadlines, write back.

The book knows nothing of any kind in particular: it hands each accepted event of a call to every
kind (``domain.timers.registry``), keeps the state each returns, and fires what is due by the
time it is given. Each kind's state is JSON in the store; the book decodes it on the way in and
encodes it on the way out, and writes only what changed.

A kind's code failing on one timer (a bug, or a stored state it can no longer read) must not halt
the pipeline or drop the event that triggered it: the timer is marked failed (``failed_reason`` in
the ``timers`` table, ``crisis_timer_failures_total``, an error log naming the call), stops, and
everything else goes on. The event itself is stored as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents.failures import describe
from domain.timers.kind import Step, TimerContext, TimerEvent, TimerKind
from schemas.calls import CallEvent
from schemas.triage import TriageDecision
from sinks.base import TimerRow

log = logging.getLogger(__name__)


@dataclass
class _Live:
    """One call's current timer of one kind, as the transaction sees it."""

    kind: TimerKind[Any]
    call_id: str
    seq: int
    partition: int
    state: Any  # the kind's state; None only when the timer failed before it had one
    stored: bool
    changed: bool = False
    failed_reason: str | None = None
    deadline: datetime | None = None  # the kind's next deadline of ``state``, computed once per state
    # What this call's timers of this kind have seen, carried to a new sequence. Applying an event is
    # not idempotent (an override read again after the team's timer closed would start a second
    # one), so an event seen before is skipped: by its offset when Kafka delivers a record again (a
    # crash or broker restart replays from the last commit; a call's records are in order on its
    # partition, so everything up to the last applied offset was seen, with a timer or without), by
    # its id when a CAD sends it again as a new record.
    applied: set[str] = field(default_factory=set)
    through_offset: int | None = None

    def seen(self, event_id: str, partition: int, offset: int) -> bool:
        return event_id in self.applied or (
            partition == self.partition and self.through_offset is not None and offset <= self.through_offset)

    def mark(self, event_id: str, partition: int, offset: int) -> None:
        self.applied.add(event_id)
        if partition == self.partition:
            self.through_offset = offset if self.through_offset is None else max(self.through_offset, offset)
        self.changed = True

    def __post_init__(self) -> None:
        if self.state is not None:
            self.deadline = self.kind.next_deadline(self.state)

    def update(self, state: Any) -> None:
        self.state = state
        self.deadline = self.kind.next_deadline(state)
        self.changed = True

    def row(self) -> TimerRow:
        if self.failed_reason is None:
            return TimerRow(self.kind.name, self.call_id, self.seq, self.partition, self.kind.encode(self.state),
                            self.deadline, self.stored, None, tuple(sorted(self.applied)), self.through_offset)
        try:
            encoded = self.kind.encode(self.state) if self.state is not None else {}
        except Exception:
            encoded = {}
        return TimerRow(self.kind.name, self.call_id, self.seq, self.partition, encoded, None, self.stored,
                        self.failed_reason, tuple(sorted(self.applied)), self.through_offset)


@dataclass
class Effects:
    """What applying events and firing deadlines produced, for the write, the topics and the metrics."""

    events: list[tuple[str, TimerEvent]] = field(default_factory=list)  # (kind, event)
    fired: list[tuple[str, TimerEvent]] = field(default_factory=list)  # the subset fired by a deadline
    notes: list[str] = field(default_factory=list)
    observations: list[tuple[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # kind names


class TimerBook:
    """Every timer of the calls a transaction touches (see the module docstring)."""

    def __init__(self, kinds: Sequence[TimerKind[Any]], rows: Iterable[TimerRow] = ()) -> None:
        self.kinds = {kind.name: kind for kind in kinds}
        self.live: dict[tuple[str, str], _Live] = {}
        # Timers a newer one of the same call and kind replaced in this transaction: still written, so
        # the stored row has its final (stopped) state whatever the batch boundaries were.
        self.replaced: list[_Live] = []
        self.effects = Effects()
        self.adopt(rows)

    def adopt(self, rows: Iterable[TimerRow]) -> list[_Live]:
        """Take stored rows into the book (the highest sequence of each call and kind); returns the new ones."""
        adopted = []
        for row in rows:
            kind = self.kinds.get(row.kind)
            current = self.live.get((row.kind, row.call_id))
            if kind is None or (current is not None and current.seq >= row.seq):
                continue
            live = _Live(kind, row.call_id, row.seq, row.partition, None, stored=True, failed_reason=row.failed_reason,
                         applied=set(row.applied_event_ids), through_offset=row.applied_through_offset)
            if row.failed_reason is None:
                try:
                    live.state = kind.decode(row.state)
                    live.deadline = row.next_deadline_at
                except Exception as exc:
                    self._fail(live, "reading its stored state", exc)
            self.live[(row.kind, row.call_id)] = live
            adopted.append(live)
        return adopted

    # -- events ------------------------------------------------------------------------------

    def apply(self, event: CallEvent, partition: int, offset: int, decision: TriageDecision | None) -> None:
        """Hand one accepted event of a call (inbound at ``partition``/``offset``) to every kind, unless
        they saw it already; ``decision`` is the call's current one."""
        for name, kind in self.kinds.items():
            if event.type not in kind.event_types:
                continue
            live = self.live.get((name, event.call_id))
            if live is not None and (live.failed_reason is not None or live.seen(event.event_id, partition, offset)):
                continue
            context = TimerContext(decision if event.type in kind.needs_decision_for else None)
            try:
                step = kind.on_event(live.state if live is not None else None, event, context)
            except Exception as exc:
                if live is None:
                    live = _Live(kind, event.call_id, 0, partition, None, stored=False)
                    self.live[(name, event.call_id)] = live
                self._fail(live, f"applying {event.type} {event.event_id}", exc)
                continue
            self._take(kind, event.call_id, partition, live, step, fired=False)
            current = self.live.get((name, event.call_id))
            if current is not None:
                current.mark(event.event_id, partition, offset)

    def _take(self, kind: TimerKind[Any], call_id: str, partition: int, live: _Live | None, step: Step[Any],
              fired: bool) -> None:
        effects = self.effects
        if step.notes:
            effects.notes.extend(step.notes)
        if step.observations:
            effects.observations.extend(step.observations)
        if step.events:
            emitted = [(kind.name, event) for event in step.events]
            effects.events.extend(emitted)
            if fired:
                effects.fired.extend(emitted)
        if step.started:
            if live is not None and live.deadline is not None:
                log.error("%s timer of call %s started again while still running: the old one is kept too",
                          kind.name, call_id)
            seq = live.seq + 1 if live is not None else 0
            if live is not None:
                self.replaced.append(live)
            self.live[(kind.name, call_id)] = _Live(kind, call_id, seq, partition, step.state, stored=False,
                                                    changed=True, applied=set(live.applied) if live else set(),
                                                    through_offset=live.through_offset if live else None)
        elif live is not None and step.state is not None and step.state is not live.state \
                and step.state != live.state:
            live.update(step.state)

    # -- deadlines ---------------------------------------------------------------------------

    def fire(self, now_of: Callable[[int], datetime | None]) -> None:
        """Advance every running timer whose deadline has passed by its partition's time (``None``: not yet)."""
        for live in list(self.live.values()):
            if live.failed_reason is not None:
                continue
            if live.deadline is None:
                continue
            now = now_of(live.partition)
            if now is None or not live.deadline < now:
                continue
            try:
                step = live.kind.advance(live.state, now)
            except Exception as exc:
                self._fail(live, f"advancing it to {now.isoformat()}", exc)
                continue
            self._take(live.kind, live.call_id, live.partition, live, step, fired=True)

    def _fail(self, live: _Live, doing: str, exc: Exception) -> None:
        log.error("%s timer of call %s failed while %s: %s; it is stopped (timers.failed_reason)",
                  live.kind.name, live.call_id, doing, describe(exc, 500))
        live.failed_reason = f"{doing}: {describe(exc, 1500)}"
        live.deadline = None
        live.changed = True
        self.effects.failures.append(live.kind.name)

    # -- write-back --------------------------------------------------------------------------

    def rows(self) -> list[TimerRow]:
        """The timers that changed, encoded for the store."""
        rows = []
        for live in [*self.replaced, *self.live.values()]:
            if not live.changed and live.stored:
                continue
            try:
                rows.append(live.row())
            except Exception as exc:
                self._fail(live, "writing its state", exc)
                rows.append(live.row())
        return rows

    def partition_of(self) -> dict[str, int]:
        """Each call's partition, as its timers know it (outputs follow their call's input partition)."""
        return {live.call_id: live.partition for live in self.live.values()}
