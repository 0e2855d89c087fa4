"""The daily outcomes feed: each center's closed days on ``crisis.outcomes.v1``, revised when they change.

A day closes when its end (midnight in the policy's time zone) plus ``CRISIS_OUTCOMES_LATENESS_SECONDS``
has passed: by the wall clock live, by event time (the newest call stored for the center) in
replay and simulation (``CRISIS_TIMER_CLOCK=event``). Each round (``tick``, on every worker):

1. **revise**: for closed days whose aggregates changed since their last record, compute the day's
   counts, suppress small cells (a partner topic is a publication: the same rule as the reports),
   and store revision *n+1* when the suppressed counts differ from revision *n*, in one transaction;
2. **publish**: send the stored records not yet published, await delivery, mark them published.

A record is stored before it is sent (an outbox), so a crash between sending and marking re-sends the
identical record with the same ``event_id`` (center, day, revision), which consumers drop. Row locks
with ``SKIP LOCKED`` let every worker run the feed without publishing a revision twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson

from agents.clock import wall_clock
from domain.outcome_report import complete, suppress_counts
from domain.outcomes import MEASURES
from domain.triage import deterministic_id
from schemas.outcomes import OutcomesDaily
from sinks import outcome_feed as feed
from streams import topics
from streams.cloudevents import cloudevent_headers
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import OutboundMessage, Publisher

log = logging.getLogger(__name__)

DAYS_PER_ROUND = 2000
RECORDS_PER_ROUND = 2000


def day_end(day: date, zone: ZoneInfo) -> datetime:
    """The instant a local day ends."""
    return datetime.combine(day + timedelta(days=1), time(0), zone)


def record_for(center_id: str, day: date, revision: int, counts: dict[str, int], zone: ZoneInfo, threshold: int,
               computed_at: datetime) -> tuple[OutcomesDaily, str]:
    """A day's record and the hash of its content (what decides whether a new revision is due)."""
    shown, suppressed = suppress_counts(complete(counts, MEASURES), threshold)
    content = orjson.dumps({"counts": shown, "suppressed": suppressed, "threshold": threshold},
                           option=orjson.OPT_SORT_KEYS)
    record = OutcomesDaily(
        event_id=deterministic_id("outcomes.daily", center_id, day.isoformat(), str(revision)),
        center_id=center_id, day=day, timezone=zone.key, revision=revision, computed_at=computed_at,
        suppression_threshold=threshold, counts=shown, suppressed=suppressed)
    return record, hashlib.sha256(content).hexdigest()


class OutcomesFeed:
    """One worker's share of the feed (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, publisher: Publisher, settings: Settings, zone: ZoneInfo,
                 metrics: PipelineMetrics, clock: Callable[[], datetime] = wall_clock) -> None:
        self.pool = pool
        self.publisher = publisher
        self.settings = settings
        self.zone = zone
        self.metrics = metrics
        self.clock = clock
        self.live = settings.timer_clock == "wall"
        self.lateness = timedelta(seconds=settings.outcomes_lateness_seconds)
        self.topic = settings.topic(topics.OUTCOMES)

    async def tick(self) -> int:
        """One round: revise closed days, publish what is stored; returns records published. Never raises."""
        try:
            await self.revise()
            published = await self.publish()
            self.metrics.outcome_feed_pending.set(await feed.count_unpublished(self.pool))
            return published
        except Exception:
            self.metrics.outcome_feed_errors.inc()
            log.exception("outcomes feed round failed; retried at the next tick")
            return 0

    def _closed(self, center_id: str, day: date, clocks: dict[str, datetime], wall: datetime) -> bool:
        now = wall if self.live else clocks.get(center_id)
        return now is not None and now - self.lateness >= day_end(day, self.zone)

    async def revise(self) -> int:
        """Store a new revision for every closed day whose suppressed counts changed; returns how many."""
        wall = self.clock()
        # Live, no day after the last one closed by the wall clock can close: leave their rows unlocked.
        last_day = (wall - self.lateness).astimezone(self.zone).date() - timedelta(days=1) if self.live else None
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await feed.changed_days(conn, DAYS_PER_ROUND, last_day)
            if not rows:
                return 0
            clocks = {} if self.live else await feed.center_clocks(conn, sorted({r["center_id"] for r in rows}))
            closed = [(r["center_id"], r["day"], r["version"]) for r in rows
                      if self._closed(r["center_id"], r["day"], clocks, wall)]
            if not closed:
                return 0
            keys = [(center, day) for center, day, _ in closed]
            counts = await feed.day_counts(conn, keys)
            last = await feed.last_records(conn, keys)
            records = []
            for key in keys:
                previous = last.get(key)
                revision = previous[0] + 1 if previous else 1
                record, content_hash = record_for(*key, revision, counts.get(key, {}), self.zone,
                                                  self.settings.suppression_threshold, wall)
                if previous is not None and previous[1] == content_hash:
                    continue  # the day changed, but not in anything partners see
                records.append({"center_id": key[0], "day": key[1], "revision": revision,
                                "event_id": record.event_id, "payload": record.model_dump(mode="json"),
                                "content_hash": content_hash})
            await feed.add_records(conn, records)
            await feed.mark_fed(conn, closed)
        return len(records)

    def _message(self, row: Any) -> OutboundMessage:
        """A stored record as published: keyed by center, a CloudEvent like every record we produce."""
        payload = row["payload"]
        record = orjson.loads(payload)
        headers = cloudevent_headers(record["event_id"], record["type"], self.settings.event_source,
                                     datetime.fromisoformat(record["computed_at"]), record["center_id"])
        return OutboundMessage(self.topic, row["center_id"].encode(), payload.encode(), headers=headers)

    async def publish(self) -> int:
        """Send stored records not yet published, then mark them; returns how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await feed.unpublished(conn, RECORDS_PER_ROUND)
            if not rows:
                return 0
            await self.publisher.publish([self._message(row) for row in rows])
            await feed.mark_published(conn, [row["event_id"] for row in rows])
        wall = self.clock()
        for row in rows:
            first = row["revision"] == 1
            self.metrics.outcome_feed_records.labels("first" if first else "revised").inc()
            if first and self.live:
                due = day_end(row["day"], self.zone) + self.lateness
                self.metrics.outcome_feed_lag.observe(max(0.0, (wall - due).total_seconds()))
        return len(rows)
