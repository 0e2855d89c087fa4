"""What a batch publishes: only what was stored for the first time, each on its topic and partition.

Every record carries CloudEvents headers (``streams.cloudevents``); a dead letter also carries the
headers Kafka Connect's dead-letter queues use, so operators' tooling reads where it came from.
None of them copies personal data: ids, names of things, the readable error (which never echoes
field values), never the record's content.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TypeVar

from sinks.base import BatchWrite, RejectedRecord, Stored
from streams.cloudevents import Headers, cloudevent_headers
from streams.publisher import OutboundMessage
from streams.topics import EMITTED_TOPICS

DEAD_LETTER_TYPE = "crisis.deadletter"
MAX_KEY_BYTES = 1024

T = TypeVar("T")


def outbound_messages(
    write: BatchWrite, stored: Stored, partition_of: Mapping[str, int], topic: Callable[[str], str], source: str
) -> list[OutboundMessage]:
    """Decisions, timer events and dead letters new in this batch, in that order, keyed by call id.

    Outputs follow their call's input partition (``partition_of``): a call's events share a
    partition number across topics, and no key hashing is needed. ``topic`` adds the deployment's
    prefix; ``source`` is the CloudEvents source of this deployment.
    """
    # One message per stored id, the first occurrence: two inputs with one event id but other content
    # in one batch (a CAD bug) give two decisions with one id; Postgres keeps the first, and partners
    # must never see one id carry two different events.
    messages = [
        OutboundMessage(topic(EMITTED_TOPICS[type(d)]), d.call_id.encode(), d.model_dump_json().encode(),
                        partition_of.get(d.call_id),
                        cloudevent_headers(d.event_id, d.type, source, d.decided_at, d.call_id))
        for d in _first_occurrences(write.decisions, stored.decision_ids, lambda d: d.event_id)
    ]
    messages += [
        OutboundMessage(topic(EMITTED_TOPICS[type(e.event)]), e.event.call_id.encode(), e.payload,
                        partition_of.get(e.event.call_id),
                        cloudevent_headers(e.event.event_id, e.event.type, source, e.event.occurred_at,
                                           e.event.call_id))
        for e in _first_occurrences(write.timer_events, stored.timer_event_ids, lambda e: e.event.event_id)
    ]
    messages += [
        OutboundMessage(
            topic(EMITTED_TOPICS[type(r.letter)]),
            # The rejected record's own key when it is a reasonable one; a huge key would make the
            # letter too large for the broker (the table keeps every byte of it).
            _small_key(r),
            r.letter.model_dump_json().encode(),
            r.letter.source_partition,
            _dead_letter_headers(r, source),
        )
        for r in write.dead_letters
        if r.letter.event_id in stored.dead_letter_ids
    ]
    return messages


def _small_key(rejected: RejectedRecord) -> bytes | None:
    key = rejected.original_key
    return key if key is not None and len(key) <= MAX_KEY_BYTES else None


def _dead_letter_headers(rejected: RejectedRecord, source: str) -> Headers:
    letter = rejected.letter
    key = _small_key(rejected)
    subject = key.decode("utf-8", "replace") if key is not None else None
    return (
        *cloudevent_headers(letter.event_id, DEAD_LETTER_TYPE, source, letter.dead_lettered_at, subject),
        ("__connect.errors.topic", letter.source_topic.encode()),
        ("__connect.errors.partition", str(letter.source_partition).encode()),
        ("__connect.errors.offset", str(letter.source_offset).encode()),
        ("__connect.errors.stage", letter.stage.encode()),
        ("__connect.errors.exception.class.name", letter.exception.encode()),
        ("__connect.errors.exception.message", letter.error.encode()),
        ("crisis.deadletter.reason", letter.reason.encode()),
    )


def _first_occurrences(items: Sequence[T], stored_ids: AbstractSet[str], event_id: Callable[[T], str]) -> list[T]:
    """The items whose event id was stored, each id once (its first occurrence, the one the store kept)."""
    seen: set[str] = set()
    out = []
    for item in items:
        key = event_id(item)
        if key in stored_ids and key not in seen:
            seen.add(key)
            out.append(item)
    return out
