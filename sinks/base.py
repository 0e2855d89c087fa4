"""The store contract: what one batch reads and writes, in one transaction.

The pipeline reads per-call state (running timers, the latest decision) and writes everything a
batch produced in a single transaction, so a batch is stored whole or not at all. Writes are
idempotent, keyed by event id (or call id for timer state); ``write`` reports which emitted
events are new, so a replayed batch publishes nothing twice.

``InMemoryStore`` implements the same contract for fast unit tests of the agents.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from domain.sla import SlaTimer
from schemas.calls import CallClosed, CallReceived, UnitArrived, UnitDispatched
from schemas.deadletter import DeadLetter
from schemas.sla import SlaEvent
from schemas.triage import TriageDecision

LifecycleEvent = UnitDispatched | UnitArrived | CallClosed


@dataclass
class BatchWrite:
    """Everything one batch stores."""

    calls: list[tuple[CallReceived, str | None]] = field(default_factory=list)  # (call, person_ref)
    decisions: list[TriageDecision] = field(default_factory=list)
    lifecycle: list[LifecycleEvent] = field(default_factory=list)
    timers: list[SlaTimer] = field(default_factory=list)
    sla_events: list[SlaEvent] = field(default_factory=list)
    dead_letters: list[tuple[DeadLetter, bytes]] = field(default_factory=list)  # (letter, original)


@dataclass(frozen=True)
class Stored:
    """Event ids stored for the first time by a ``write``: exactly the ones to publish."""

    decision_ids: frozenset[str]
    sla_event_ids: frozenset[str]
    dead_letter_ids: frozenset[str]


class StoreTransaction(Protocol):
    async def lock_timers(self, call_ids: Sequence[str]) -> dict[str, SlaTimer]:
        """Existing timers of these calls, locked until the transaction ends."""
        ...

    async def latest_decisions(self, call_ids: Sequence[str]) -> dict[str, TriageDecision]:
        """The current decision (the newest, override or not) of each of these calls."""
        ...

    async def due_timers(self, before: datetime, partition: int | None, limit: int) -> list[SlaTimer]:
        """Running timers whose next deadline is before ``before``; rows locked elsewhere are skipped."""
        ...

    async def write(self, batch: BatchWrite) -> Stored: ...


class Store(Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[StoreTransaction]: ...

    async def count_running_timers(self) -> int: ...

    async def close(self) -> None: ...


def _next_deadline(timer: SlaTimer) -> datetime | None:
    return timer.next_deadline


class InMemoryStore:
    """A dict-backed ``Store`` with the same idempotence rules as the Postgres one."""

    def __init__(self) -> None:
        self.calls: dict[str, CallReceived] = {}
        self.decisions: dict[str, TriageDecision] = {}
        self.lifecycle: dict[str, LifecycleEvent] = {}
        self.timers: dict[str, SlaTimer] = {}
        self.sla_events: dict[str, SlaEvent] = {}
        self.dead_letters: dict[str, DeadLetter] = {}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_InMemoryTransaction]:
        tx = _InMemoryTransaction(self)
        yield tx
        tx.commit()

    async def count_running_timers(self) -> int:
        return sum(1 for timer in self.timers.values() if timer.running)

    async def close(self) -> None:
        return None


class _InMemoryTransaction:
    def __init__(self, store: InMemoryStore) -> None:
        self.store = store
        self.pending: BatchWrite | None = None

    async def lock_timers(self, call_ids: Sequence[str]) -> dict[str, SlaTimer]:
        return {cid: self.store.timers[cid] for cid in call_ids if cid in self.store.timers}

    async def latest_decisions(self, call_ids: Sequence[str]) -> dict[str, TriageDecision]:
        latest: dict[str, TriageDecision] = {}
        for decision in self.store.decisions.values():
            if decision.call_id in call_ids:
                current = latest.get(decision.call_id)
                if current is None or decision.decided_at >= current.decided_at:
                    latest[decision.call_id] = decision
        return latest

    async def due_timers(self, before: datetime, partition: int | None, limit: int) -> list[SlaTimer]:
        due = [
            timer
            for timer in self.store.timers.values()
            if (deadline := _next_deadline(timer)) is not None
            and deadline < before
            and (partition is None or timer.partition == partition)
        ]
        return sorted(due, key=lambda t: (t.next_deadline, t.call_id))[:limit]

    async def write(self, batch: BatchWrite) -> Stored:
        # Applied at commit, like a real transaction; new ids are computed now.
        self.pending = batch
        return Stored(
            decision_ids=frozenset(d.event_id for d in batch.decisions if d.event_id not in self.store.decisions),
            sla_event_ids=frozenset(
                e.event_id for e in batch.sla_events if e.event_id not in self.store.sla_events
            ),
            dead_letter_ids=frozenset(
                d.event_id for d, _ in batch.dead_letters if d.event_id not in self.store.dead_letters
            ),
        )

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
        for timer in b.timers:
            s.timers[timer.call_id] = timer
        for sla_event in b.sla_events:
            s.sla_events.setdefault(sla_event.event_id, sla_event)
        for letter, _ in b.dead_letters:
            s.dead_letters.setdefault(letter.event_id, letter)
