"""What a batch publishes: only what was stored for the first time, each on its topic and partition."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sinks.base import BatchWrite, Stored
from streams.publisher import OutboundMessage
from streams.topics import EMITTED_TOPICS


def outbound_messages(
    write: BatchWrite, stored: Stored, partition_of: Mapping[str, int], topic: Callable[[str], str]
) -> list[OutboundMessage]:
    """Decisions, timer events and dead letters new in this batch, in that order, keyed by call id.

    Outputs follow their call's input partition (``partition_of``): a call's events share a
    partition number across topics, and no key hashing is needed. ``topic`` adds the deployment's prefix.
    """
    messages = [
        OutboundMessage(topic(EMITTED_TOPICS[type(d)]), d.call_id.encode(), d.model_dump_json().encode(),
                        partition_of.get(d.call_id))
        for d in write.decisions
        if d.event_id in stored.decision_ids
    ]
    messages += [
        OutboundMessage(topic(EMITTED_TOPICS[type(e.event)]), e.event.call_id.encode(), e.payload,
                        partition_of.get(e.event.call_id))
        for e in write.timer_events
        if e.event.event_id in stored.timer_event_ids
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
