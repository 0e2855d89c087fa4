"""The store contract: what one batch reads and writes, in one transaction.

The pipeline reads per-call state (the call's timers, the latest decision) and writes everything a
batch produced in a single transaction, so a batch is stored whole or not at all. Writes are
idempotent, keyed by event id (or by kind, call and sequence for timer state); ``write`` reports
which emitted events are new, so a replayed batch publishes nothing twice.

Timer rows hold a kind's state as JSON: the store never interprets it (``agents.timer_book`` and
the kinds in ``domain.timers`` do).

``InMemoryStore`` implements the same contract for fast unit tests of the agents.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from domain.outcomes import CallFacts, Key, OutcomeInput, apply_all, deltas
from domain.policy import load_policy
from domain.timers.kind import TimerEvent
from schemas.calls import CallClosed, CallReceived, FollowupAttempted, FollowupCompleted, UnitArrived, UnitDispatched
from schemas.deadletter import DeadLetter
from schemas.triage import TriageDecision

LifecycleEvent = UnitDispatched | UnitArrived | CallClosed | FollowupAttempted | FollowupCompleted
TimerKey = tuple[str, str, int]  # (kind, call_id, seq)


class StaleRead(Exception):
    """Another worker created a row this batch read as absent (a rebalance): retry the batch.

    Rows that exist are locked for the batch; a row that does not exist cannot be, so a lagging
    worker's insert would otherwise overwrite the newer state another worker has just written.
    Per-call state (timers, outcome facts) is inserted with ``ON CONFLICT DO NOTHING`` and this is
    raised when a row was there after all: the batch is read again, now seeing it.
    """


@dataclass(frozen=True)
class TimerRow:
    """One timer as stored: its key, the call's partition, the kind's JSON state and next deadline."""

    kind: str
    call_id: str
    seq: int
    partition: int
    state: Mapping[str, Any]
    next_deadline_at: datetime | None
    stored: bool = False  # read from the store (written back with an update) or new (inserted)
    failed_reason: str | None = None
    # What the call's timers of this kind have seen (agents.timer_book): event ids, and the offset on
    # ``partition`` up to which every record was seen.
    applied_event_ids: tuple[str, ...] = ()
    applied_through_offset: int | None = None

    @property
    def key(self) -> TimerKey:
        return (self.kind, self.call_id, self.seq)


@dataclass(frozen=True)
class EmittedEvent:
    """An event a timer emitted: its kind, the event, and the event as published (JSON, serialised once
    for the topic and the store)."""

    kind: str
    event: TimerEvent
    payload: bytes


@dataclass(frozen=True)
class RejectedRecord:
    """A dead letter and every byte of the record it was made from."""

    letter: DeadLetter
    original_value: bytes
    original_key: bytes | None = None


@dataclass
class BatchWrite:
    """Everything one batch stores."""

    calls: list[tuple[CallReceived, str | None]] = field(default_factory=list)  # (call, person_ref)
    decisions: list[TriageDecision] = field(default_factory=list)
    lifecycle: list[LifecycleEvent] = field(default_factory=list)
    timers: list[TimerRow] = field(default_factory=list)
    timer_events: list[EmittedEvent] = field(default_factory=list)
    dead_letters: list[RejectedRecord] = field(default_factory=list)


@dataclass(frozen=True)
class Stored:
    """Event ids stored for the first time by a ``write``: exactly the ones to publish."""

    decision_ids: frozenset[str] = frozenset()
    timer_event_ids: frozenset[str] = frozenset()
    dead_letter_ids: frozenset[str] = frozenset()


class StoreTransaction(Protocol):
    async def lock_timers(self, call_ids: Sequence[str]) -> list[TimerRow]:
        """Every timer of these calls (all kinds, all sequences), locked until the transaction ends."""
        ...

    async def latest_decisions(self, call_ids: Sequence[str]) -> dict[str, TriageDecision]:
        """The current decision (the newest, override or not) of each of these calls."""
        ...

    async def due_timers(self, before: datetime, partitions: Collection[int] | None, limit: int) -> list[TimerRow]:
        """Running timers due before ``before`` on these partitions (all when ``None``), oldest deadline
        first; rows another transaction holds are skipped, the ones returned are locked."""
        ...

    async def write(self, batch: BatchWrite) -> Stored:
        """Store the batch idempotently; raises ``StaleRead`` when a new timer already exists."""
        ...

    async def finish(self) -> None:
        """The batch's last writes, after every ``write``: what its new events change in the outcome
        facts and daily counts (today's count rows are every worker's, so they are locked last, for the
        shortest time). Run at the commit if not called before."""
        ...


class Store(Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[StoreTransaction]: ...

    async def count_running_timers(self) -> dict[str, int]:
        """Running timers by kind."""
        ...

    async def close(self) -> None: ...


class InMemoryStore:
    """A dict-backed ``Store`` with the same idempotence rules as the Postgres one."""

    def __init__(self, zone: ZoneInfo | None = None) -> None:
        self.zone = zone or load_policy().zone
        self.outcome_facts: dict[str, CallFacts] = {}  # as outcome_calls
        self.outcome_daily: Counter[Key] = Counter()  # as outcome_daily
        self.calls: dict[str, CallReceived] = {}
        self.decisions: dict[str, TriageDecision] = {}
        self.lifecycle: dict[str, LifecycleEvent] = {}
        self.timers: dict[TimerKey, TimerRow] = {}
        self.timer_events: dict[str, EmittedEvent] = {}
        self.dead_letters: dict[str, RejectedRecord] = {}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_InMemoryTransaction]:
        tx = _InMemoryTransaction(self)
        yield tx
        tx.commit()

    async def count_running_timers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.timers.values():
            if row.next_deadline_at is not None:
                counts[row.kind] = counts.get(row.kind, 0) + 1
        return counts

    async def close(self) -> None:
        return None

    def record_outcomes(self, items: Iterable[OutcomeInput]) -> None:
        """The outcome aggregates, as ``sinks.aggregates`` keeps them in Postgres (events new to the store only)."""
        after = apply_all(self.outcome_facts, items)
        self.outcome_daily.update(deltas(self.outcome_facts, after, self.zone))
        self.outcome_daily = Counter({key: n for key, n in self.outcome_daily.items() if n != 0})
        self.outcome_facts.update(after)

    def timer_states(self, kind: str) -> dict[str, Mapping[str, Any]]:
        """Test helper: the current (highest sequence) state of each call's timer of ``kind``."""
        current: dict[str, TimerRow] = {}
        for row in self.timers.values():
            if row.kind == kind and (row.call_id not in current or row.seq > current[row.call_id].seq):
                current[row.call_id] = row
        return {call_id: row.state for call_id, row in current.items()}


class _InMemoryTransaction:
    def __init__(self, store: InMemoryStore) -> None:
        self.store = store
        self.pending: BatchWrite | None = None
        self.new_ids: tuple[frozenset[str], ...] = ()

    async def lock_timers(self, call_ids: Sequence[str]) -> list[TimerRow]:
        wanted = set(call_ids)
        return [row for key, row in sorted(self.store.timers.items()) if row.call_id in wanted]

    async def latest_decisions(self, call_ids: Sequence[str]) -> dict[str, TriageDecision]:
        latest: dict[str, TriageDecision] = {}
        for decision in self.store.decisions.values():
            if decision.call_id in call_ids:
                current = latest.get(decision.call_id)
                if current is None or decision.decided_at >= current.decided_at:
                    latest[decision.call_id] = decision
        return latest

    async def due_timers(self, before: datetime, partitions: Collection[int] | None, limit: int) -> list[TimerRow]:
        due = [
            row for row in self.store.timers.values()
            if row.next_deadline_at is not None and row.next_deadline_at < before
            and (partitions is None or row.partition in partitions)
        ]
        return sorted(due, key=lambda row: (row.next_deadline_at, row.key))[:limit]

    async def write(self, batch: BatchWrite) -> Stored:
        for row in batch.timers:
            if not row.stored and row.key in self.store.timers:
                raise StaleRead(f"timer {row.key} was created by another transaction")
        # Applied at commit, like a real transaction; new ids are computed now.
        self.pending = batch
        stored = Stored(
            decision_ids=frozenset(d.event_id for d in batch.decisions if d.event_id not in self.store.decisions),
            timer_event_ids=frozenset(
                e.event.event_id for e in batch.timer_events if e.event.event_id not in self.store.timer_events
            ),
            dead_letter_ids=frozenset(
                r.letter.event_id for r in batch.dead_letters if r.letter.event_id not in self.store.dead_letters
            ),
        )
        self.new_ids = (frozenset(c.call_id for c, _ in batch.calls if c.call_id not in self.store.calls),
                        stored.decision_ids,
                        frozenset(e.event_id for e in batch.lifecycle if e.event_id not in self.store.lifecycle),
                        stored.timer_event_ids)
        return stored

    async def finish(self) -> None:
        return None  # the facts change at commit, with everything else

    def commit(self) -> None:
        if self.pending is None:
            return
        s, b = self.store, self.pending
        for call, _ in b.calls:
            s.calls.setdefault(call.call_id, call)
        for decision in b.decisions:
            s.decisions.setdefault(decision.event_id, decision)
        for event in b.lifecycle:
            s.lifecycle.setdefault(event.event_id, event)
        for row in b.timers:
            s.timers[row.key] = replace(row, stored=True)
        for emitted in b.timer_events:
            s.timer_events.setdefault(emitted.event.event_id, emitted)
        for rejected in b.dead_letters:
            s.dead_letters.setdefault(rejected.letter.event_id, rejected)
        from sinks.aggregates import new_inputs  # its SQL half imports this module

        s.record_outcomes(new_inputs(b, *self.new_ids))
