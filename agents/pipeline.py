"""The call pipeline: one batch of inbound call events in, decisions and timer events out.

``CallPipeline`` holds no Faust code, so it runs the same under the Faust agent (``agents.worker``)
and in unit tests with an in-memory store. For every batch, top to bottom (``_process``):

1. decode each record with pydantic (``agents.decoding``); what is invalid becomes a dead letter;
2. in one store transaction: lock the calls' timers and read their current decisions; apply each
   event in order (``agents.handlers``, then every timer kind through ``agents.timer_book``); fire
   the deadlines each partition's event time has passed; write everything idempotently;
3. publish only what was stored for the first time (``agents.outbound``), await every delivery,
   commit; then count it (``agents.batch_metrics``), which can never fail the stored batch.

The Faust agent acknowledges the batch only when ``handle`` returns, so a crash replays the batch
and the idempotent store absorbs it. Failures follow one rule (``agents.failures``): transient ones
are retried with backoff while the consumer waits; any other is isolated to the one record that
causes it, which is dead-lettered with the exception, and the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from agents.batch import BatchState
from agents.batch_metrics import record_batch, record_timer_effects
from agents.clock import ReadPosition, caught_up_partitions, event_time_now, wall_clock
from agents.decoding import InboundRecord, Refusal, decode_record
from agents.failures import describe, isolate, rejection_reason, retry_always, retry_transient
from agents.handlers import EventHandlers
from agents.outbound import outbound_messages
from agents.timer_book import Effects, TimerBook
from domain.policy import Policy
from domain.timers.registry import timer_kinds
from schemas.calls import CallEvent
from schemas.fields import TimeWindow
from sinks.base import BatchWrite, EmittedEvent, Store, Stored, StoreTransaction
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import Publisher

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# The wall-clock ticker fires in rounds of this many, one transaction each. A batch firing by event
# time takes all that is due on its partitions at once (a replay after a long gap may have many).
DUE_TIMERS_PER_QUERY = 5000
DUE_TIMERS_PER_BATCH = 100_000


@dataclass(frozen=True)
class _Committed:
    """What a committed batch leaves behind for the pipeline and its metrics."""

    state: BatchState
    effects: Effects
    stored: Stored
    watermarks: dict[int, datetime]
    next_offsets: dict[int, int]


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
        self.store = store
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.live = settings.timer_clock == "wall"
        self.lateness = timedelta(seconds=settings.timer_lateness_seconds)
        self.kinds = timer_kinds(policy)
        self.handlers = EventHandlers(policy, settings.pseudonym_key.encode())
        # Event types after which someone needs the call's current decision from the store (the
        # batch decides call.received itself).
        self.decision_types = ({"triage.overridden"}
                               | {t for kind in self.kinds for t in kind.needs_decision_for}) - {"call.received"}
        # Per partition: the newest occurred_at read (event time) and the next offset to process.
        self.watermarks: dict[int, datetime] = {}
        self.next_offsets: dict[int, int] = {}

    # -- the batch ---------------------------------------------------------------------------

    async def handle(self, records: Sequence[InboundRecord]) -> None:
        """Process one batch until every record is stored or dead-lettered, and what is new published."""
        started = time.perf_counter()
        await isolate(records, self._attempt, self._reject)
        self.metrics.batch_duration.observe(time.perf_counter() - started)

    async def _attempt(self, records: Sequence[InboundRecord]) -> None:
        self._committed(await retry_transient("batch", lambda: self._process(records), self._count_retry))

    def _committed(self, committed: _Committed) -> None:
        """The batch is stored: only now does it count."""
        self.watermarks = committed.watermarks
        self.next_offsets = committed.next_offsets
        record_batch(self.metrics, committed.state, committed.effects, committed.stored, self.clock(), self.live,
                     self.lateness)

    async def _reject(self, record: InboundRecord, exc: Exception) -> None:
        """The one record that fails alone, for good: dead-letter it with the exception.

        A dead letter is bounded and built by us, so no record can make storing it fail: if it fails,
        the fault is the pipeline's own (a bug, or a systemic store or broker problem), and skipping the
        record would lose it. It is retried until it passes, alerting, and its partition waits.
        """
        log.error("record %s/%d@%d fails for good: %s", record.topic, record.partition, record.offset,
                  describe(exc, 500))
        reason = rejection_reason(exc)
        refusal = Refusal(reason, describe(exc), "store" if reason == "unstorable" else "process",
                          type(exc).__name__)
        self._committed(await retry_always("dead_letter", lambda: self._process([record], refusal), self._count_retry))

    def _count_retry(self, stage: str) -> None:
        self.metrics.batch_retries.labels(stage).inc()

    async def _process(self, records: Sequence[InboundRecord], rejected: Refusal | None = None) -> _Committed:
        now = self.clock()
        state = BatchState()
        window = TimeWindow.around(now, self.settings.event_time_max_ahead_seconds,
                                   self.settings.earliest_event_time)
        decoded: list[tuple[InboundRecord, CallEvent]] = []
        for record in records:
            result = rejected or decode_record(record, window)
            if isinstance(result, Refusal):
                state.reject(record, result, now)
            else:
                decoded.append((record, result))
        watermarks = dict(self.watermarks)
        next_offsets = dict(self.next_offsets)
        for record in records:
            next_offsets[record.partition] = max(next_offsets.get(record.partition, 0), record.offset + 1)

        async with self.store.transaction() as tx:
            book = TimerBook(self.kinds, await tx.lock_timers([event.call_id for _, event in decoded]))
            state.latest = await tx.latest_decisions(
                [event.call_id for _, event in decoded if event.type in self.decision_types])
            for record, event in decoded:
                state.consumed[event.type] += 1
                state.partitions[event.call_id] = record.partition
                refusal = self.handlers.handle(state, event)
                if refusal is not None:
                    state.reject(record, refusal, now)
                    continue
                book.apply(event, record.partition, record.offset, state.latest.get(event.call_id))
                previous = watermarks.get(record.partition)
                if previous is None or event.occurred_at > previous:
                    watermarks[record.partition] = event.occurred_at
            await self._fire_by_event_time(tx, book, {record.partition for record, _ in decoded}, watermarks, now)
            stored = await self._store_and_publish(tx, state, book)
        return _Committed(state, book.effects, stored, watermarks, next_offsets)

    async def _store_and_publish(self, tx: StoreTransaction, state: BatchState, book: TimerBook) -> Stored:
        state.write.timers = book.rows()
        state.write.timer_events = [EmittedEvent(kind, event, event.model_dump_json().encode())
                                    for kind, event in book.effects.events]
        stored = await tx.write(state.write)
        partition_of = {**book.partition_of(), **state.partitions}
        delivered = await self.publisher.send(outbound_messages(state.write, stored, partition_of, self.settings.topic,
                                                                self.settings.event_source))
        try:
            await tx.finish()  # the outcome aggregates, written while the broker acknowledges
        except BaseException:
            await asyncio.gather(delivered, return_exceptions=True)  # no delivery left unawaited
            raise
        await delivered  # commit only what the broker has
        return stored

    # -- deadlines by event time -------------------------------------------------------------

    async def _fire_by_event_time(self, tx: StoreTransaction, book: TimerBook, partitions: set[int],
                                  watermarks: dict[int, datetime], wall: datetime) -> None:
        """Fire what each partition's event time has passed: the batch's own timers (after all its
        events were applied, so an arrival before its deadline meets it even when later events in the
        batch are past it), then every other timer due on the batch's partitions."""
        def now_of(partition: int) -> datetime | None:
            watermark = watermarks.get(partition)
            return event_time_now(watermark, wall, self.lateness, self.live) if watermark is not None else None

        book.fire(now_of)
        for partition in sorted(partitions):
            now = now_of(partition)
            if now is not None:
                book.adopt(await tx.due_timers(now, [partition], DUE_TIMERS_PER_BATCH))
        book.fire(now_of)

    # -- deadlines by wall clock -------------------------------------------------------------

    async def fire_due_by_wall_clock(self, positions: Mapping[int, ReadPosition] | None = None) -> int:
        """Fire running timers whose deadline has passed on the wall clock; returns events fired.

        Only on the partitions this worker has read to the end (``positions``, see ``agents.clock``);
        ``None`` means every partition (no consumer to ask: the benchmark). Runs on every worker;
        ``FOR UPDATE SKIP LOCKED`` lets workers share the work without firing a timer twice.
        """
        wall = self.clock()
        now = wall - self.lateness
        partitions: Collection[int] | None = None
        if positions is not None:
            partitions = caught_up_partitions(positions, self.watermarks, wall, self.lateness)
        fired = 0
        while True:
            due_calls: list[str] = []
            try:
                stored, due = await retry_transient(
                    "wall_clock_timers", partial(self._fire_round, now, partitions, None, due_calls),
                    self._count_retry)
            except Exception as exc:  # one timer's rows refused for good: find it, keep firing the rest
                log.error("firing %d due timers failed (%s): isolating the one that fails", len(due_calls),
                          describe(exc, 300))
                isolated: list[Stored] = []
                await isolate(sorted(set(due_calls)), self._fire_calls(now, isolated), self._stop_failed_timers)
                stored, due = Stored(timer_event_ids=frozenset().union(*(s.timer_event_ids for s in isolated))), 0
            fired += len(stored.timer_event_ids)
            if due < DUE_TIMERS_PER_QUERY:
                break
        await self.update_pending_gauge()
        return fired

    async def _fire_round(self, now: datetime, partitions: Collection[int] | None, call_ids: Sequence[str] | None,
                          loaded: list[str]) -> tuple[Stored, int]:
        state = BatchState()
        async with self.store.transaction() as tx:
            if call_ids is None:
                rows = await tx.due_timers(now, partitions, DUE_TIMERS_PER_QUERY)
            else:
                rows = await tx.lock_timers(call_ids)
            loaded[:] = [row.call_id for row in rows]
            book = TimerBook(self.kinds, rows)
            book.fire(lambda partition: now)
            stored = await self._store_and_publish(tx, state, book)
        try:
            record_timer_effects(self.metrics, book.effects, stored, self.clock() if self.live else None,
                                 self.lateness)
        except Exception:
            log.exception("recording timer metrics failed (the timers are stored)")
        return stored, len(rows)

    def _fire_calls(self, now: datetime, results: list[Stored]) -> Callable[[Sequence[str]], Awaitable[None]]:
        """Fire the due timers of these calls only (isolating a failure); what was stored goes to ``results``."""
        async def fire(call_ids: Sequence[str]) -> None:
            stored, _ = await retry_transient("wall_clock_timers", lambda: self._fire_round(now, None, call_ids, []),
                                              self._count_retry)
            results.append(stored)
        return fire

    async def _stop_failed_timers(self, call_id: str, exc: Exception) -> None:
        """A call whose due timers cannot be stored or published: mark them failed so they stop."""
        reason = f"firing it failed for good: {describe(exc, 1500)}"

        async def stop() -> None:
            async with self.store.transaction() as tx:
                rows = [row for row in await tx.lock_timers([call_id]) if row.next_deadline_at is not None]
                await tx.write(BatchWrite(timers=[replace(row, next_deadline_at=None, failed_reason=reason)
                                                  for row in rows]))
            for row in rows:
                self.metrics.timer_failures.labels(row.kind).inc()
                log.error("%s timer of call %s stopped: %s", row.kind, call_id, reason)

        await retry_transient("wall_clock_timers", stop, self._count_retry)

    async def update_pending_gauge(self) -> None:
        """Refresh ``crisis_timers_pending``; a failed count only leaves the gauge stale."""
        try:
            counts = await self.store.count_running_timers()
            for kind in self.kinds:
                self.metrics.timers_pending.labels(kind.name).set(counts.get(kind.name, 0))
        except Exception:
            log.warning("could not count pending timers", exc_info=True)
