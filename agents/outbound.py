"""What a batch publishes: only what was stored for the first time, each on its topic and partition."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from sinks.base import BatchWrite, Stored
from streams.publisher import OutboundMessage
from streams.topics import EMITTED_TOPICS


class _HasEventId(Protocol):
    @property
    def event_id(self) -> str: ...


E = TypeVar("E", bound=_HasEventId)


def outbound_messages(
    write: BatchWrite, stored: Stored, partition_of: Mapping[str, int], topic: Callable[[str], str]
) -> list[OutboundMessage]:
    """Decisions, timer events and dead letters new in this batch, in that order, keyed by call id.

    Outputs follow their call's input partition (``partition_of``): a call's events share a
    partition number across topics, and no key hashing is needed. ``topic`` adds the deployment's prefix.
    """
    # One message per stored id, the first occurrence: two inputs with one event id but other content
    # in one batch (a CAD bug) give two decisions with one id; Postgres keeps the first, and partners
    # must never see one id carry two different events.
    first = _first_occurrences
    messages = [
        OutboundMessage(topic(EMITTED_TOPICS[type(d)]), d.call_id.encode(), d.model_dump_json().encode(),
                        partition_of.get(d.call_id))
        for d in first(write.decisions, stored.decision_ids)
    ]
    messages += [
        OutboundMessage(topic(EMITTED_TOPICS[type(e)]), e.call_id.encode(), e.model_dump_json().encode(),
                        partition_of.get(e.call_id))
        for e in first([e for _, e in write.timer_events], stored.timer_event_ids)
    ]
    messages += [
        OutboundMessage(
            topic(EMITTED_TOPICS[type(r.letter)]),
            # The rejected record's own key when it is a reasonable one; a huge key would make the
            # letter too large for the broker (the table keeps every byte of it).
            r.original_key if r.original_key is not None and len(r.original_key) <= 1024 else None,
            r.letter.model_dump_json().encode(),
            r.letter.source_partition,
        )
        for r in write.dead_letters
        if r.letter.event_id in stored.dead_letter_ids
    ]
    return messages


def _first_occurrences(events: Sequence[E], stored_ids: frozenset[str]) -> list[E]:
    """The events whose id was stored, each id once (its first occurrence, the one the store kept)."""
    seen: set[str] = set()
    out = []
    for event in events:
        if event.event_id in stored_ids and event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out
