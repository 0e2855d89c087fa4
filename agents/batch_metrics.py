"""Counting what a stored batch did. Runs after the commit and never fails it.

Decisions, overrides, timer events and dead letters count once (rows stored for the first time);
events consumed and unmatched count every read, replays included.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from agents.batch import BatchState
from agents.timer_book import Effects
from domain.triage import lowers_police_involvement
from schemas.followups import FollowupEvent
from schemas.sla import SlaEvent
from sinks.base import Stored
from streams.metrics import PipelineMetrics

log = logging.getLogger(__name__)


# A counter to add to: the metric and its label values. Counted per batch, then added once each (the wall-clock
# path fires thousands of events a round: one label lookup per event is measurable).
CounterKey = tuple[str, tuple[str, ...]]


def _count_sla(metrics: PipelineMetrics, event: SlaEvent, counts: Counter[CounterKey]) -> None:
    counts[("sla_events", (event.type, event.response.value))] += 1
    if event.arrival_seconds is not None:
        metrics.sla_arrival.labels(event.response.value).observe(event.arrival_seconds)


def _count_followup(metrics: PipelineMetrics, event: FollowupEvent, counts: Counter[CounterKey]) -> None:
    counts[("followup_events", (event.type,))] += 1
    if event.type == "followup.completed" and event.linkage is not None:
        counts[("followups_completed", (event.linkage.value,))] += 1


# How each emitted timer event is counted: one line per event model.
TIMER_EVENT_METRICS: dict[type, Callable[[PipelineMetrics, Any, Counter[CounterKey]], None]] = {
    SlaEvent: _count_sla,
    FollowupEvent: _count_followup,
}


def record_timer_effects(metrics: PipelineMetrics, effects: Effects, stored: Stored, wall: datetime | None,
                         lateness: timedelta) -> None:
    """Timer events stored for the first time, notes, observations, failures, and firing lag.

    ``wall`` is the wall clock in live mode (lag is measured from the moment a deadline could first
    fire: deadline plus the allowed lateness), ``None`` in event-time mode (no meaningful lag).
    """
    counts: Counter[CounterKey] = Counter()
    for _, event in effects.events:
        if event.event_id in stored.timer_event_ids:
            TIMER_EVENT_METRICS[type(event)](metrics, event, counts)
    for (name, labels), count in counts.items():
        getattr(metrics, name).labels(*labels).inc(count)
    if wall is not None:
        lag_of_kind: dict[str, Any] = {}
        for kind, event in effects.fired:
            if event.event_id in stored.timer_event_ids:
                if kind not in lag_of_kind:
                    lag_of_kind[kind] = metrics.timer_lag.labels(kind)
                lag_of_kind[kind].observe(max(0.0, (wall - event.occurred_at - lateness).total_seconds()))
    for reason, count in Counter(effects.notes).items():
        metrics.unmatched_events.labels(reason).inc(count)
    for name, seconds in effects.observations:
        metrics.observations[name].observe(seconds)
    for kind, count in Counter(effects.failures).items():
        metrics.timer_failures.labels(kind).inc(count)


def record_batch(metrics: PipelineMetrics, state: BatchState, effects: Effects, stored: Stored, now: datetime,
                 live: bool, lateness: timedelta) -> None:
    """Everything a committed batch counts, ``now`` being just after the commit; logs instead of raising
    (the batch is stored already)."""
    try:
        _record_batch(metrics, state, effects, stored, now, live, lateness)
    except Exception:
        log.exception("recording the metrics of a stored batch failed (the batch itself is stored)")


def _record_batch(metrics: PipelineMetrics, state: BatchState, effects: Effects, stored: Stored, now: datetime,
                  live: bool, lateness: timedelta) -> None:
    m = metrics
    for event_type, count in state.consumed.items():
        m.events_consumed.labels(event_type).inc(count)
    routes: Counter[str] = Counter()
    overrides: Counter[tuple[str, str]] = Counter()
    safety: Counter[str] = Counter()
    for decision in state.write.decisions:
        if decision.event_id not in stored.decision_ids:
            continue
        if decision.type == "triage.overridden":
            overrides[(str(decision.previous_route), decision.route.value)] += 1
            if decision.previous_route is not None and lowers_police_involvement(
                    decision.safety_flags, decision.previous_route, decision.route):
                safety["approved"] += 1  # allowed only with an approver (refused ones are dead letters)
            continue
        routes[decision.route.value] += 1
        latency = (now - decision.decided_at).total_seconds()
        if latency < 0:
            m.events_from_future.inc()  # counted, not clamped: a CAD clock running fast must show
        else:
            m.decision_latency.observe(latency)
    for route, count in routes.items():
        m.decisions.labels(route).inc(count)
    for decision_id, center, count in state.unmapped_codes:
        if decision_id in stored.decision_ids:
            m.unmapped_nature_codes.labels(center).inc(count)
    for (previous, route), count in overrides.items():
        m.overrides.labels(previous, route).inc(count)
    letters = Counter(r.letter.reason for r in state.write.dead_letters if r.letter.event_id in stored.dead_letter_ids)
    for reason, count in letters.items():
        m.dead_letters.labels(reason).inc(count)
    safety["refused"] = letters["override_refused"]
    for outcome, count in safety.items():
        m.safety_overrides.labels(outcome).inc(count)
    record_timer_effects(m, effects, stored, now if live else None, lateness)
