"""What a timer kind is: pure domain code that starts, follows and advances one call's timer.

The pipeline keeps every kind's state in one durable table and fires every kind's deadlines on one
path (``agents.timer_book``); a kind only says what its state is and how it changes:

- ``on_event``: an inbound event of the call was accepted (``state`` is ``None`` when the call has no
  timer of this kind yet: this is where a kind starts one);
- ``advance``: fire whatever deadlines have passed by ``now`` (event time or wall clock: the caller
  decides, so live and replay give the same answers);
- ``next_deadline``: when ``advance`` next has something to do (``None``: the timer has stopped);
- ``encode`` / ``decode``: the state as JSON for the store.

Adding a kind is a new module implementing this protocol plus one line in ``domain.timers.registry``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from schemas.calls import CallEvent
from schemas.followups import FollowupEvent
from schemas.sla import SlaEvent
from schemas.triage import TriageDecision

# Every event a timer emits: each type has its partner topic (streams.topics.EMITTED_TOPICS).
TimerEvent = SlaEvent | FollowupEvent

S = TypeVar("S")


@dataclass(frozen=True)
class TimerContext:
    """What a kind may look at besides its own state when one of the call's events is applied."""

    # The call's current decision after this event (a new one for call.received and overrides);
    # None when the call has none, or when the kind did not ask for it for this event type.
    decision: TriageDecision | None


class Step(NamedTuple, Generic[S]):
    """The result of one change: the new state, what it emits, and notes explaining odd input.

    ``started`` says the state is a new timer: when the call already had one of this kind, the old
    one (which must have stopped) is kept as it is and the new one gets the next sequence number.
    ``observations`` are (histogram name, seconds) pairs for the metrics, from the kind's closed set.
    """

    state: S | None
    events: tuple[TimerEvent, ...] = ()
    notes: tuple[str, ...] = ()
    started: bool = False
    observations: tuple[tuple[str, float], ...] = ()


def stored_time(value: str | datetime) -> datetime:
    """A time from a stored state: ``encode`` keeps datetimes (the store's JSON encoder writes them as
    RFC 3339 in C, cheaper than ``isoformat`` per field), and they come back as text from Postgres."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def stored_optional_time(value: str | datetime | None) -> datetime | None:
    return None if value is None else stored_time(value)


class TimerKind(Protocol[S]):
    """One kind of deadline (see the module docstring)."""

    @property
    def name(self) -> str:
        """Stable name, stored with every timer row (``sla_arrival``, ``followup``)."""
        ...

    @property
    def event_types(self) -> frozenset[str]:
        """Inbound event types ``on_event`` acts on (the others are never handed to it)."""
        ...

    @property
    def needs_decision_for(self) -> frozenset[str]:
        """Inbound event types after which ``on_event`` needs the call's current decision."""
        ...

    @property
    def notes(self) -> tuple[str, ...]:
        """Every note ``on_event`` may return (a closed set: a metric label)."""
        ...

    def on_event(self, state: S | None, event: CallEvent, context: TimerContext) -> Step[S]: ...

    def advance(self, state: S, now: datetime) -> Step[S]: ...

    def next_deadline(self, state: S) -> datetime | None: ...

    def encode(self, state: S) -> dict[str, Any]:
        """The state as a JSON-able dict; datetimes may stay datetimes (see ``stored_time``)."""
        ...

    def decode(self, data: Mapping[str, Any]) -> S: ...
