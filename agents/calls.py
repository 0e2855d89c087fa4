"""The call pipeline: one batch of inbound call events in, decisions and SLA events out.

``CallPipeline`` holds no Faust code, so it runs the same under the Faust agent (``agents.worker``)
and in unit tests with an in-memory store. For every batch:

1. decode each record with pydantic; anything invalid becomes a dead letter (reason + original bytes);
2. in one store transaction: apply each event in order (triage, override, unit arrival, close),
   fire the SLA deadlines the event-time watermark has passed, write everything idempotently;
3. publish only what was stored for the first time, await delivery, then commit.

The Faust agent acknowledges the batch only when ``handle`` returns, so a crash replays the batch
and the idempotent store absorbs it. Infrastructure errors are retried, never raised: in Faust an
exception would acknowledge the batch and lose it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka.errors import MessageSizeTooLargeError
from pydantic import ValidationError

from domain.policy import Policy
from domain.sla import SlaTimer, advance, record_arrival, record_close, record_dispatch, timer_for
from domain.triage import decide, deterministic_id, override
from schemas.calls import (
    CallClosed,
    CallEvent,
    CallReceived,
    TriageOverridden,
    UnitArrived,
    UnitDispatched,
    UnitType,
    decode_call_event,
)
from schemas.deadletter import DeadLetter
from schemas.sla import Response, SlaEvent
from schemas.triage import Route, TriageDecision
from sinks.base import BatchWrite, Store, Stored, StoreTransaction
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import OutboundMessage, Publisher

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# The wall-clock ticker fires in rounds of this many, one transaction each. A batch firing by event
# time takes all that is due on its partitions at once (a replay after a long gap may have many).
DUE_TIMERS_PER_QUERY = 5000
DUE_TIMERS_PER_BATCH = 100_000
RETRY_DELAYS_SECONDS = (0.2, 0.5, 1, 2, 5, 10)
MAX_DEAD_LETTER_BASE64 = 512 * 1024
# Refusals no retry can cure: the data itself is wrong for Postgres, or too large for the broker.
UNSTORABLE: tuple[type[Exception], ...] = (asyncpg.DataError, MessageSizeTooLargeError)


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class InboundRecord:
    """One record as read from Kafka, before any decoding."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class _BatchState:
    """What one batch is building inside its transaction."""

    write: BatchWrite = field(default_factory=BatchWrite)
    timers: dict[str, SlaTimer] = field(default_factory=dict)
    changed_timers: set[str] = field(default_factory=set)
    latest: dict[str, TriageDecision] = field(default_factory=dict)
    consumed: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)  # call id -> inbound partition

    def note(self, reason: str) -> None:
        """Count a valid event that matched nothing to act on (``crisis_unmatched_events_total``)."""
        self.unmatched[reason] = self.unmatched.get(reason, 0) + 1


def _dead_letter_reason(exc: ValidationError) -> str:
    """A bounded reason class for metrics; the full error text travels with the letter."""
    kinds = {err["type"] for err in exc.errors()}
    if "json_invalid" in kinds or "json_type" in kinds:
        return "invalid_json"
    if "union_tag_invalid" in kinds:
        return "unknown_type"
    if "union_tag_not_found" in kinds:
        return "missing_type"
    if "missing" in kinds:
        return "missing_field"
    return "invalid_field"


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(event)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)[:2000]


class CallPipeline:
    """Decode, decide, time and store one batch of call events; publish what is new."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        store: Store,
        publisher: Publisher,
        metrics: PipelineMetrics,
        clock: Clock = wall_clock,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.pseudonym_key = settings.pseudonym_key.encode()
        self.lateness = timedelta(seconds=settings.timer_lateness_seconds)
        # Highest occurred_at seen per partition: event time, for deadlines under replay.
        self.watermarks: dict[int, datetime] = {}

    # -- the batch ---------------------------------------------------------------------------

    async def handle(self, records: Sequence[InboundRecord]) -> None:
        """Process one batch until it is stored and published, retrying infrastructure errors."""
        started = time.perf_counter()
        await self._retrying("batch", lambda: self._store_batch(records))
        self.metrics.batch_duration.observe(time.perf_counter() - started)

    async def _store_batch(self, records: Sequence[InboundRecord]) -> None:
        """Store a batch; when Postgres or Kafka refuses its data for good, find the record and reject it.

        A refusal that no retry can cure (``UNSTORABLE``: bad text for Postgres, a message too
        large for the broker) would otherwise block the partition for ever. The batch is then
        stored record by record, in order, and only the refused record is dead-lettered.
        """
        try:
            await self._handle_once(records)
        except UNSTORABLE as exc:
            if len(records) > 1:
                log.warning("batch refused (%r): storing its %d records one by one", exc, len(records))
                for record in records:
                    await self._store_batch([record])
                return
            log.error("record %s/%d@%d refused for good: %r", records[0].topic, records[0].partition,
                      records[0].offset, exc)
            await self._handle_once(records, rejected=f"refused by Postgres or Kafka: {exc!r}"[:2000])

    async def _retrying(self, stage: str, work: Callable[[], object]) -> None:
        attempt = 0
        while True:
            try:
                await work()  # type: ignore[misc]
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = RETRY_DELAYS_SECONDS[min(attempt, len(RETRY_DELAYS_SECONDS) - 1)]
                attempt += 1
                self.metrics.batch_retries.labels(stage).inc()
                log.exception("%s failed (attempt %d); retrying in %.1f s", stage, attempt, delay)
                await asyncio.sleep(delay)

    async def _handle_once(self, records: Sequence[InboundRecord], rejected: str | None = None) -> None:
        state = _BatchState()
        decoded: list[tuple[InboundRecord, CallEvent]] = []
        for record in records:
            if rejected is not None:
                self._dead_letter(state, record, "unstorable", rejected)
                continue
            try:
                decoded.append((record, decode_call_event(record.value)))
            except ValidationError as exc:
                self._dead_letter(state, record, _dead_letter_reason(exc), _describe(exc))
        watermarks = dict(self.watermarks)

        async with self.store.transaction() as tx:
            lookups = [event.call_id for _, event in decoded]
            state.timers = await tx.lock_timers(lookups)
            overridden = [event.call_id for _, event in decoded if isinstance(event, TriageOverridden)]
            state.latest = await tx.latest_decisions(overridden)
            for record, event in decoded:
                state.consumed[event.type] = state.consumed.get(event.type, 0) + 1
                state.partitions[event.call_id] = record.partition
                try:
                    self._apply(state, record, event)
                except Exception as exc:  # a bug must not stall the partition: keep the event
                    log.exception("processing failed for event %s", event.event_id)
                    self._dead_letter(state, record, "processing_error", repr(exc)[:2000])
                previous = watermarks.get(record.partition)
                if previous is None or event.occurred_at > previous:
                    watermarks[record.partition] = event.occurred_at
            await self._fire_by_event_time(tx, state, {r.partition for r, _ in decoded}, watermarks)
            stored = await self._store_and_publish(tx, state)
        # Committed: only now does the batch count.
        self.watermarks = watermarks
        self._record_metrics(state, stored)

    # -- one event ---------------------------------------------------------------------------

    def _apply(self, state: _BatchState, record: InboundRecord, event: CallEvent) -> None:
        match event:
            case CallReceived():
                self._on_call_received(state, record, event)
            case TriageOverridden():
                self._on_override(state, record, event)
            case UnitDispatched():
                state.write.lifecycle.append(event)
                if event.unit_type is UnitType.CO_RESPONDER:
                    self._update_timer(state, event.call_id, lambda t: (record_dispatch(t, event.occurred_at), []),
                                       missing="dispatch_without_timer")
            case UnitArrived():
                state.write.lifecycle.append(event)
                if event.unit_type is UnitType.CO_RESPONDER:
                    self._on_team_arrival(state, event)
            case CallClosed():
                state.write.lifecycle.append(event)
                self._update_timer(state, event.call_id, lambda t: record_close(t, event.occurred_at))

    def _on_team_arrival(self, state: _BatchState, event: UnitArrived) -> None:
        timer = state.timers.get(event.call_id)
        if timer is None:
            log.info("arrival_without_timer: call %s", event.call_id)
            state.note("arrival_without_timer")
        elif timer.arrived_at is not None:
            state.note("duplicate_arrival")
        elif timer.closed_at is not None:
            state.note("arrival_after_close")
        else:
            if timer.dispatched_at is None:
                state.note("arrival_before_dispatch")  # still met or late: the team is there
            self._update_timer(state, event.call_id, lambda t: record_arrival(t, event.occurred_at))

    def _on_call_received(self, state: _BatchState, record: InboundRecord, call: CallReceived) -> None:
        decision = decide(call, self.policy, self.pseudonym_key)
        state.write.calls.append((call, decision.person_ref))
        state.write.decisions.append(decision)
        state.latest[call.call_id] = decision
        self._start_timer(state, decision, record.partition)

    def _on_override(self, state: _BatchState, record: InboundRecord, event: TriageOverridden) -> None:
        previous = state.latest.get(event.call_id)
        if previous is None:
            self._dead_letter(state, record, "unknown_call", f"override for call {event.call_id!r}, "
                              "which has no triage decision (call.received not seen)")
            return
        decision = override(previous, event)
        state.write.decisions.append(decision)
        state.latest[event.call_id] = decision
        if decision.route is Route.CO_RESPONDER:
            self._start_timer(state, decision, record.partition)
        else:
            # The team is no longer wanted as first responder: stop waiting for it.
            self._update_timer(
                state, event.call_id,
                lambda t: record_close(t, event.occurred_at) if t.response is Response.FIRST else (t, []),
            )

    def _start_timer(self, state: _BatchState, decision: TriageDecision, partition: int) -> None:
        timer = timer_for(decision, self.policy, partition)
        existing = state.timers.get(decision.call_id)
        if timer is None:
            return
        if existing is not None and (existing.closed_at is None or existing.requested_at == timer.requested_at):
            return  # one timer per request: a replayed decision never restarts it
        state.timers[decision.call_id] = timer
        state.changed_timers.add(decision.call_id)

    def _update_timer(
        self,
        state: _BatchState,
        call_id: str,
        step: Callable[[SlaTimer], tuple[SlaTimer, list[SlaEvent]]],
        missing: str | None = None,
    ) -> None:
        """Apply one timer step; ``missing`` names the reason to count when the call has no timer."""
        timer = state.timers.get(call_id)
        if timer is None:
            if missing:
                log.info("%s: call %s", missing, call_id)
                state.note(missing)
            return
        new_timer, events = step(timer)
        if new_timer == timer:
            return
        state.timers[call_id] = new_timer
        state.changed_timers.add(call_id)
        state.write.sla_events.extend(events)

    def _dead_letter(self, state: _BatchState, record: InboundRecord, reason: str, error: str) -> None:
        """Keep a rejected record: the full bytes in Postgres, a copy on the dead-letter topic."""
        key = record.key.decode("utf-8", "replace").replace("\x00", "\ufffd") if record.key is not None else None
        original = base64.b64encode(record.value).decode()
        if len(original) > MAX_DEAD_LETTER_BASE64:
            # The broker refuses messages over 1 MiB: a record that can never be published would
            # block its partition. The table keeps every byte.
            error += f" (original of {len(record.value)} bytes kept in the dead_letters table only)"
            original = ""
        letter = DeadLetter(
            event_id=deterministic_id("deadletter", record.topic, str(record.partition), str(record.offset)),
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            source_key=key,
            reason=reason,
            error=error.replace("\x00", "\ufffd"),
            original_value_base64=original,
            dead_lettered_at=self.clock(),
        )
        state.write.dead_letters.append((letter, record.value))

    # -- deadlines by event time -------------------------------------------------------------

    def event_time_now(self, watermark: datetime) -> datetime:
        """The time deadlines are judged against on a partition, from its watermark.

        Events may arrive a little out of order across calls, so the watermark trails the newest
        event by the allowed lateness. Live (wall clock mode), a CAD clock running fast must not
        breach timers early, so the watermark never runs ahead of the wall clock.
        """
        now = watermark
        if self.settings.timer_clock == "wall":
            now = min(now, self.clock())
        return now - self.lateness

    async def _fire_by_event_time(
        self, tx: StoreTransaction, state: _BatchState, partitions: set[int], watermarks: dict[int, datetime]
    ) -> None:
        for call_id, timer in list(state.timers.items()):
            deadline = timer.next_deadline
            if deadline is not None and timer.partition in watermarks:
                now = self.event_time_now(watermarks[timer.partition])
                if deadline < now:
                    self._advance_timer(state, call_id, now)
        for partition in sorted(partitions & watermarks.keys()):
            now = self.event_time_now(watermarks[partition])
            for timer in await tx.due_timers(now, partition, DUE_TIMERS_PER_BATCH):
                if timer.call_id not in state.timers:  # ours were advanced above
                    state.timers[timer.call_id] = timer
                    self._advance_timer(state, timer.call_id, now)

    def _advance_timer(self, state: _BatchState, call_id: str, now: datetime) -> None:
        self._update_timer(state, call_id, lambda t: advance(t, now))

    async def _store_and_publish(self, tx: StoreTransaction, state: _BatchState) -> Stored:
        state.write.timers = [state.timers[call_id] for call_id in sorted(state.changed_timers)]
        stored = await tx.write(state.write)
        for timer in state.timers.values():
            state.partitions.setdefault(timer.call_id, timer.partition)
        await self.publisher.publish(self._messages(state, stored))
        return stored

    # -- deadlines by wall clock -------------------------------------------------------------

    async def fire_due_by_wall_clock(self) -> int:
        """Fire every running timer whose deadline has passed on the wall clock; returns events fired.

        Runs on every worker; ``FOR UPDATE SKIP LOCKED`` lets two workers share the work without
        firing a timer twice, and lets timers fire even while their partition is being rebalanced.
        """
        fired = 0
        while True:
            now = self.clock() - self.lateness
            rounds: list[tuple[_BatchState, Stored, int]] = []

            async def fire_some(now: datetime = now, rounds: list = rounds) -> None:
                state = _BatchState()
                async with self.store.transaction() as tx:
                    due = await tx.due_timers(now, None, DUE_TIMERS_PER_QUERY)
                    state.timers = {timer.call_id: timer for timer in due}
                    for timer in due:
                        self._advance_timer(state, timer.call_id, now)
                    stored = await self._store_and_publish(tx, state)
                rounds.append((state, stored, len(due)))

            await self._retrying("wall_clock_timers", fire_some)
            state, stored, due_count = rounds[-1]
            self._record_metrics(state, stored)
            wall = self.clock()
            for event in state.write.sla_events:
                if event.event_id in stored.sla_event_ids and event.type in ("sla.warning", "sla.breached"):
                    self.metrics.sla_timer_lag.observe(max(0.0, (wall - event.deadline_at).total_seconds()))
            fired += len(stored.sla_event_ids)
            if due_count < DUE_TIMERS_PER_QUERY:
                break
        await self.update_pending_gauge()
        return fired

    async def update_pending_gauge(self) -> None:
        """Refresh ``crisis_sla_timers_pending``; a failed count only leaves the gauge stale."""
        try:
            self.metrics.sla_timers_pending.set(await self.store.count_running_timers())
        except Exception:
            log.warning("could not count pending timers", exc_info=True)

    # -- output ------------------------------------------------------------------------------

    def _messages(self, state: _BatchState, stored: Stored) -> list[OutboundMessage]:
        """What to publish: only what was stored for the first time, on the call's partition."""
        write, partition_of = state.write, state.partitions
        decision_ids, sla_ids, dead_ids = stored.decision_ids, stored.sla_event_ids, stored.dead_letter_ids
        topic = self.settings.topic
        messages = [
            OutboundMessage(topic(topics.TRIAGE), d.call_id.encode(), d.model_dump_json().encode(),
                            partition_of.get(d.call_id))
            for d in write.decisions
            if d.event_id in decision_ids
        ]
        messages += [
            OutboundMessage(topic(topics.SLA), e.call_id.encode(), e.model_dump_json().encode(),
                            partition_of.get(e.call_id))
            for e in write.sla_events
            if e.event_id in sla_ids
        ]
        messages += [
            OutboundMessage(
                topic(topics.DEADLETTER),
                letter.source_key.encode() if letter.source_key is not None else None,
                letter.model_dump_json().encode(),
                letter.source_partition,
            )
            for letter, _ in write.dead_letters
            if letter.event_id in dead_ids
        ]
        return messages

    def _record_metrics(self, state: _BatchState, stored: Stored) -> None:
        """Decisions, overrides, SLA events and dead letters count once (rows stored for the first time);
        events consumed and unmatched count every read, replays included."""
        m = self.metrics
        for event_type, count in state.consumed.items():
            m.events_consumed.labels(event_type).inc(count)
        for reason, count in state.unmatched.items():
            m.unmatched_events.labels(reason).inc(count)
        now = self.clock()
        routes: Counter[str] = Counter()
        overrides: Counter[tuple[str, str]] = Counter()
        for decision in state.write.decisions:
            if decision.event_id not in stored.decision_ids:
                continue
            if decision.type == "triage.overridden":
                overrides[(str(decision.previous_route), decision.route.value)] += 1
            else:
                routes[decision.route.value] += 1
                m.decision_latency.observe(max(0.0, (now - decision.decided_at).total_seconds()))
        for route, count in routes.items():
            m.decisions.labels(route).inc(count)
        for (previous, route), count in overrides.items():
            m.overrides.labels(previous, route).inc(count)
        sla: Counter[tuple[str, str]] = Counter()
        for event in state.write.sla_events:
            if event.event_id not in stored.sla_event_ids:
                continue
            sla[(event.type, event.response.value)] += 1
            if event.arrival_seconds is not None:
                m.sla_arrival.labels(event.response.value).observe(event.arrival_seconds)
        for (kind, response), count in sla.items():
            m.sla_events.labels(kind, response).inc(count)
        letters = Counter(letter.reason for letter, _ in state.write.dead_letters
                          if letter.event_id in stored.dead_letter_ids)
        for reason, count in letters.items():
            m.dead_letters.labels(reason).inc(count)
