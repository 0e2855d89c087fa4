"""The ground-truth check of a run, record by record (as Kafka's ``TransactionsTest`` and ``StreamsEosTest`` do).

Against the expected outcome (``crisis.chaos.reference``), what Postgres holds:

- every call stored once, with its event id and person reference, and exactly one current decision
  (no two decisions tied at its latest time), the one the rules and overrides give;
- every decision, lifecycle event and timer event (SLA warnings and breaches, follow-ups, any kind:
  deadlines fire by event id) stored once, none missing, none extra; every timer in the same state;
- every dead letter for the same record (topic, partition, offset) with the same reason.

What the partner topics (and the dead-letter topic) carry, after a consumer's deduplication by
event id: every stored event published, nothing published that was not stored, and two messages
with one id always the same event. Identical duplicates (a batch published, then replayed after a
crash) are what consumers drop: counted, not a failure. A dead letter's ``dead_lettered_at`` is the
time it was written, so a replayed letter differs there only; that field is ignored in the comparison.

``lost`` counts expected records missing, ``duplicated`` records stored more than once (a call with
two rules' decisions, a second current decision), ``unexpected`` stored records nobody expected,
``mismatched`` records stored with other content than expected.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.decoding import InboundRecord, decode_record
from crisis.chaos.reference import Expected
from schemas.deadletter import DEAD_LETTER_REASONS
from schemas.fields import TimeWindow
from sinks.verification import StoredState

# Fields that record when something was written, not what: ignored when comparing duplicates.
PROCESSING_TIME_FIELDS = ("dead_lettered_at",)
EXAMPLES = 5


@dataclass
class TopicCheck:
    """One output topic after a consumer's deduplication by event id."""

    messages: int = 0
    unique: int = 0
    identical_duplicates: int = 0  # dropped by consumers: the same event again
    conflicting_duplicates: int = 0  # one id, two different events: a failure
    missing: int = 0  # stored, never published
    phantom: int = 0  # published, never stored

    @property
    def ok(self) -> bool:
        return self.conflicting_duplicates == 0 and self.missing == 0 and self.phantom == 0


@dataclass
class Verdict:
    """The outcome of one run's check; ``problems`` names a few offending ids per kind (ids only)."""

    expected: dict[str, int] = field(default_factory=dict)
    lost: Counter[str] = field(default_factory=Counter)
    duplicated: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    mismatched: Counter[str] = field(default_factory=Counter)
    topics: dict[str, TopicCheck] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (sum(self.lost.values()) or sum(self.duplicated.values()) or sum(self.unexpected.values())
                    or sum(self.mismatched.values())) and all(check.ok for check in self.topics.values())

    @property
    def duplicates_dropped(self) -> int:
        return sum(check.identical_duplicates for check in self.topics.values())

    def _note(self, what: str, ids: Sequence[str] | set[str]) -> None:
        if ids:
            shown = sorted(ids)[:EXAMPLES]
            self.problems.append(f"{what}: {len(ids)} (e.g. {', '.join(map(str, shown))})")


def _compare_ids(verdict: Verdict, kind: str, expected: set[str], stored: Sequence[str]) -> None:
    counts = Counter(stored)
    lost = expected - counts.keys()
    extra = counts.keys() - expected
    twice = {key for key, n in counts.items() if n > 1}
    verdict.lost[kind] += len(lost)
    verdict.unexpected[kind] += len(extra)
    verdict.duplicated[kind] += sum(counts[key] - 1 for key in twice)
    verdict._note(f"{kind} lost", lost)
    verdict._note(f"{kind} unexpected", extra)
    verdict._note(f"{kind} stored more than once", twice)


def check_store(expected: Expected, stored: StoredState) -> Verdict:
    """Postgres against the expected outcome, record by record."""
    verdict = Verdict(expected=expected.counts())

    # Calls: one row each (the primary key), with the expected event id and pseudonym.
    _compare_ids(verdict, "calls", set(expected.calls), list(stored.calls))
    differ = {call for call, value in stored.calls.items() if call in expected.calls and expected.calls[call] != value}
    verdict.mismatched["calls"] += len(differ)
    verdict._note("calls stored with another event id or person_ref", differ)

    # Decisions: every expected one once; one rules' decision per call; one current decision, the expected one.
    _compare_ids(verdict, "decisions", set(expected.decisions), [d.event_id for d in stored.decisions])
    decided = Counter(d.call_id for d in stored.decisions if d.type == "triage.decided")
    twice = {call for call, n in decided.items() if n > 1}
    verdict.duplicated["decisions"] += sum(decided[call] - 1 for call in twice)
    verdict._note("calls with more than one rules' decision", twice)
    ties = {call for call, ids in stored.current.items() if len(ids) > 1}
    verdict.duplicated["current_decisions"] += len(ties)
    verdict._note("calls with more than one current decision", ties)
    wrong = {call for call, ids in stored.current.items()
             if len(ids) == 1 and call in expected.current and ids[0] != expected.current[call]}
    verdict.mismatched["current_decisions"] += len(wrong)
    verdict._note("calls whose current decision is not the expected one", wrong)

    _compare_ids(verdict, "lifecycle_events", expected.lifecycle, stored.lifecycle)

    # Timer events: every deadline that fell due fired once; kinds and types as expected.
    _compare_ids(verdict, "timer_events", set(expected.timer_events), list(stored.timer_events))
    differ = {event_id for event_id, value in stored.timer_events.items()
              if event_id in expected.timer_events and expected.timer_events[event_id] != value}
    verdict.mismatched["timer_events"] += len(differ)
    verdict._note("timer events of another kind, type or call", differ)

    # Timers: the same rows in the same state (what fires next, and when).
    keys = {f"{k}/{c}/{s}" for k, c, s in expected.timers}
    _compare_ids(verdict, "timers", keys, [f"{k}/{c}/{s}" for k, c, s in stored.timers])
    differ = {f"{k}/{c}/{s}" for (k, c, s), value in stored.timers.items()
              if (k, c, s) in expected.timers and expected.timers[(k, c, s)] != value}
    verdict.mismatched["timers"] += len(differ)
    verdict._note("timers in another state", differ)

    # Dead letters: the same records (partition, offset) for the same reasons.
    _compare_ids(verdict, "dead_letters", set(expected.dead_letters), list(stored.dead_letters))
    differ = {event_id for event_id, value in stored.dead_letters.items()
              if event_id in expected.dead_letters and expected.dead_letters[event_id] != value}
    verdict.mismatched["dead_letters"] += len(differ)
    verdict._note("dead letters for another record or reason", differ)
    return verdict


def _comparable(value: bytes) -> Any:
    try:
        body = json.loads(value)
    except ValueError:
        return value
    if isinstance(body, dict):
        for name in PROCESSING_TIME_FIELDS:
            body.pop(name, None)
    return body


def check_topic(verdict: Verdict, topic: str, values: Sequence[bytes], stored_ids: set[str]) -> TopicCheck:
    """One output topic (its record values) against the event ids stored for it."""
    check = TopicCheck(messages=len(values))
    seen: dict[str, Any] = {}
    conflicting: set[str] = set()
    for value in values:
        event_id = str(json.loads(value).get("event_id"))
        body = _comparable(value)
        if event_id not in seen:
            seen[event_id] = body
        elif seen[event_id] == body:
            check.identical_duplicates += 1
        else:
            check.conflicting_duplicates += 1
            conflicting.add(event_id)
    check.unique = len(seen)
    missing = stored_ids - seen.keys()
    phantom = seen.keys() - stored_ids
    check.missing, check.phantom = len(missing), len(phantom)
    verdict._note(f"{topic}: one event id, different events", conflicting)
    verdict._note(f"{topic}: stored, never published", missing)
    verdict._note(f"{topic}: published, never stored", phantom)
    verdict.topics[topic] = check
    return check


def stored_ids_by_topic(expected: Expected, stored: StoredState) -> dict[str, set[str]]:
    """Stored event ids grouped by the topic each is published on (as the fault-free run published it).

    Generic over timer kinds: whatever kinds exist, their events go where the reference sent them.
    Stored ids the reference never had are already counted as unexpected.
    """
    everything = ({d.event_id for d in stored.decisions} | set(stored.timer_events) | set(stored.dead_letters))
    return {topic: ids & everything for topic, ids in expected.published.items()}


def check_accounted(verdict: Verdict, inbound: Sequence[InboundRecord], stored: StoredState,
                    window: TimeWindow) -> int:
    """Every inbound record, on its own, is stored or dead-lettered with a known reason; returns how many are not.

    Independent of the reference: a record that decodes must have its event stored (the call, the
    lifecycle event, the override's decision) or a dead letter at its offset (an override the rules
    refuse, one for an unknown call); one that does not decode must have a dead letter at its offset.
    """
    letters = {(partition, offset): reason for partition, offset, reason in stored.dead_letters.values()}
    event_ids = ({event_id for event_id, _ in stored.calls.values()} | set(stored.lifecycle)
                 | {d.source_event_id for d in stored.decisions})
    unaccounted: list[str] = []
    unknown_reasons: list[str] = []
    for record in inbound:
        where = f"{record.partition}@{record.offset}"
        reason = letters.get((record.partition, record.offset))
        if reason is not None:
            if reason not in DEAD_LETTER_REASONS:
                unknown_reasons.append(where)
            continue
        decoded = decode_record(record, window)
        if getattr(decoded, "event_id", None) not in event_ids:
            unaccounted.append(where)
    verdict.lost["inbound_records"] += len(unaccounted)
    verdict.mismatched["dead_letter_reasons"] += len(unknown_reasons)
    verdict._note("inbound records neither stored nor dead-lettered", unaccounted)
    verdict._note("dead letters with a reason outside DEAD_LETTER_REASONS", unknown_reasons)
    return len(unaccounted)
