"""Prometheus metrics of the pipeline, defined once. Base units (seconds), ``_total`` counters.

Label values are bounded: event types, routes, responses, timer kinds, linkages and dead-letter
reasons are closed sets, and every label combination is created at zero (an alert on ``rate()``
cannot see a series' first increment).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from domain.nature_codes import OTHER_CENTERS_LABEL
from domain.timers.followup import FIRST_ATTEMPT_SECONDS
from domain.timers.registry import TIMER_KINDS
from schemas.calls import CALL_EVENT_TYPES, Linkage
from schemas.deadletter import DEAD_LETTER_REASONS
from schemas.followups import FOLLOWUP_EVENT_TYPES
from schemas.sla import Response
from schemas.triage import Route

SLA_EVENT_TYPES = ("sla.warning", "sla.breached", "sla.met", "sla.late_arrival")
RETRY_STAGES = ("batch", "wall_clock_timers", "dead_letter")
SAFETY_OVERRIDE_OUTCOMES = ("approved", "refused")
UNMATCHED_REASONS = tuple(note for kind in TIMER_KINDS for note in kind.notes)

LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
ARRIVAL_BUCKETS_SECONDS = (60, 120, 300, 450, 600, 900, 1200, 1800, 2700, 3600, 7200)
FOLLOWUP_BUCKETS_SECONDS = tuple(hours * 3600 for hours in (1, 4, 8, 24, 48, 72, 120, 168, 336, 720))
FEED_LAG_BUCKETS_SECONDS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
FEED_REVISIONS = ("first", "revised")


class PipelineMetrics:
    """All metrics on one registry; tests pass a fresh ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "crisis_events_consumed", "Inbound call events read, by event type.", ["type"], registry=r
        )
        self.decisions = Counter(
            "crisis_triage_decisions", "Triage decisions stored, by route.", ["route"], registry=r
        )
        self.overrides = Counter(
            "crisis_triage_overrides",
            "Dispatcher overrides of a triage decision, by rules' route and new route.",
            ["from_route", "to_route"],
            registry=r,
        )
        self.safety_overrides = Counter(
            "crisis_triage_safety_overrides",
            "Overrides lowering police involvement on a call with a safety flag: approved by an allowed role, "
            "or refused (dead-lettered).",
            ["outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "crisis_deadletter_events", "Inbound records sent to the dead-letter topic, by reason.",
            ["reason"], registry=r,
        )
        self.decision_latency = Histogram(
            "crisis_decision_latency_seconds",
            "Seconds from a call's occurred_at to its decision stored in Postgres (events from the future: "
            "crisis_events_from_future_total).",
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.events_from_future = Counter(
            "crisis_events_from_future",
            "Calls whose occurred_at was after the moment their decision was stored (a CAD clock running fast).",
            registry=r,
        )
        self.batch_duration = Histogram(
            "crisis_batch_duration_seconds",
            "Seconds to process one batch of inbound events (decode, store, publish).",
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.batch_retries = Counter(
            "crisis_batch_retries",
            "Work retried after a failure: a transient Postgres or Kafka error (stages batch, wall_clock_timers), "
            "or a dead letter that could not be stored (stage dead_letter: the pipeline's own fault).", ["stage"],
            registry=r,
        )
        self.sla_events = Counter(
            "crisis_sla_events", "SLA events emitted, by type and response.", ["type", "response"], registry=r
        )
        self.sla_arrival = Histogram(
            "crisis_sla_arrival_seconds",
            "Seconds from co-responder request to first co-responder arrival, by response.",
            ["response"],
            buckets=ARRIVAL_BUCKETS_SECONDS,
            registry=r,
        )
        self.followup_events = Counter(
            "crisis_followup_events", "Follow-up events emitted, by type.", ["type"], registry=r
        )
        self.followups_completed = Counter(
            "crisis_followups_completed", "Follow-ups completed, by linkage to care.", ["linkage"], registry=r
        )
        self.followup_first_attempt = Histogram(
            "crisis_followup_first_attempt_seconds",
            "Seconds from the end of a crisis contact to the first follow-up attempt.",
            buckets=FOLLOWUP_BUCKETS_SECONDS,
            registry=r,
        )
        self.timers_pending = Gauge(
            "crisis_timers_pending",
            "Timers still running, by kind (sla_arrival: teams awaited; followup: follow-ups open).",
            ["kind"],
            registry=r,
        )
        self.timer_lag = Histogram(
            "crisis_timer_lag_seconds",
            "Seconds between the moment a deadline could first fire (deadline plus the allowed lateness) and "
            "its firing, on either path (a batch's event time or the wall-clock ticker); live mode only.",
            ["kind"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.timer_failures = Counter(
            "crisis_timer_failures",
            "Timers stopped because their kind's code failed on them (timers.failed_reason says why).",
            ["kind"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "crisis_consumer_lag_events",
            "Events on the calls topic this worker has not processed yet, by partition (its partitions only).",
            ["partition"],
            registry=r,
        )
        self.unmatched_events = Counter(
            "crisis_unmatched_events",
            "Valid events that matched nothing to act on (e.g. arrival for an unknown call), by reason.",
            ["reason"],
            registry=r,
        )
        self.outcome_feed_records = Counter(
            "crisis_outcome_feed_records",
            "Daily outcome records published on crisis.outcomes.v1: a day's first record, or a revision of it.",
            ["revision"],
            registry=r,
        )
        self.outcome_feed_lag = Histogram(
            "crisis_outcome_feed_lag_seconds",
            "Seconds from the moment a day could first be fed (its end plus CRISIS_OUTCOMES_LATENESS_SECONDS) to its "
            "first record published; live mode only.",
            buckets=FEED_LAG_BUCKETS_SECONDS,
            registry=r,
        )
        self.outcome_feed_pending = Gauge(
            "crisis_outcome_feed_pending", "Outcome records stored but not yet published (the feed's outbox).",
            registry=r,
        )
        self.outcome_feed_errors = Counter(
            "crisis_outcome_feed_errors", "Rounds of the outcomes feed that failed (retried at the next tick).",
            registry=r,
        )
        # Histograms a timer kind observes through its steps, by name.
        self.observations = {FIRST_ATTEMPT_SECONDS: self.followup_first_attempt}
        self.unmapped_nature_codes = Counter(
            "crisis_triage_unmapped_nature_codes",
            "Codes of triaged calls (nature code, MPDS determinant, APCO incident type) that the center's "
            "mapping does not recognise, by center: centers the policy lists, 'other' for the rest "
            "(list them with `crisis triage --unmapped-codes FILE`).",
            ["center_id"],
            registry=r,
        )
        self._start_at_zero()

    def start_centers_at_zero(self, center_ids: Iterable[str]) -> None:
        """Create the per-center series of the centers the policy lists (``policy.nature_codes.centers``)."""
        for center_id in center_ids:
            self.unmapped_nature_codes.labels(center_id)

    def _start_at_zero(self) -> None:
        """Create every label combination now: alerts on rate() cannot see a series' first increment."""
        for event_type in CALL_EVENT_TYPES:
            self.events_consumed.labels(event_type)
        for route in Route:
            self.decisions.labels(route.value)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for stage in RETRY_STAGES:
            self.batch_retries.labels(stage)
        for outcome in SAFETY_OVERRIDE_OUTCOMES:
            self.safety_overrides.labels(outcome)
        for kind in SLA_EVENT_TYPES:
            for response in Response:
                self.sla_events.labels(kind, response.value)
        for response in Response:
            self.sla_arrival.labels(response.value)
        for followup_type in FOLLOWUP_EVENT_TYPES:
            self.followup_events.labels(followup_type)
        for linkage in Linkage:
            self.followups_completed.labels(linkage.value)
        for before in Route:
            for after in Route:
                self.overrides.labels(before.value, after.value)
        for timer_kind in TIMER_KINDS:
            self.timers_pending.labels(timer_kind.name)
            self.timer_lag.labels(timer_kind.name)
            self.timer_failures.labels(timer_kind.name)
        for reason in UNMATCHED_REASONS:
            self.unmatched_events.labels(reason)
        self.unmapped_nature_codes.labels(OTHER_CENTERS_LABEL)
        for revision in FEED_REVISIONS:
            self.outcome_feed_records.labels(revision)


class ReportMetrics:
    """Metrics of one ``crisis report`` run: a batch job, so written for node_exporter's textfile collector
    (``CRISIS_REPORT_METRICS_FILE``) rather than served. Each run replaces the file, so only gauges: a
    counter or a histogram would restart at every run, and Prometheus could not tell runs apart. Runs per
    day are the changes of the last run's timestamp."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.duration = Gauge(
            "crisis_report_last_duration_seconds",
            "Seconds the last outcome report took to read, suppress and render, by format.", ["format"], registry=r,
        )
        self.suppressed = Gauge(
            "crisis_report_suppressed_cells", "Count cells suppressed in the last report, by format.", ["format"],
            registry=r,
        )
        self.last_run = Gauge(
            "crisis_report_last_run_timestamp_seconds", "When the last outcome report finished (Unix time).",
            registry=r,
        )

    def observe(self, report_format: str, seconds: float, suppressed: int) -> None:
        self.duration.labels(report_format).set(seconds)
        self.suppressed.labels(report_format).set(suppressed)
        self.last_run.set_to_current_time()


INGEST_ENDPOINTS = ("/v1/events", "/v1/eido")
INGEST_STATUSES = ("202", "400", "401", "403", "413", "415", "503")
UNAUTHENTICATED_LABEL = "unauthenticated"
BODY_BUCKETS_BYTES = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


class IngestMetrics:
    """Metrics of `crisis ingest`, the HTTP front door (its own registry and port, beside the worker's).

    ``center_id`` labels are bounded by the token file: only authenticated centers, plus
    ``unauthenticated`` for requests without a valid token.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "crisis_ingest_requests", "HTTP requests to the ingest endpoints, by endpoint, status and center.",
            ["endpoint", "status", "center_id"], registry=r,
        )
        self.request_bytes = Histogram(
            "crisis_ingest_request_body_bytes", "Size of request bodies received, by endpoint.",
            ["endpoint"], buckets=BODY_BUCKETS_BYTES, registry=r,
        )
        self.request_duration = Histogram(
            "crisis_ingest_request_duration_seconds",
            "Seconds from a request's arrival to its response, by endpoint (202s include the Kafka acks).",
            ["endpoint"], buckets=LATENCY_BUCKETS_SECONDS, registry=r,
        )
        self.publish_duration = Histogram(
            "crisis_ingest_publish_duration_seconds",
            "Seconds to publish one request's events until Kafka acknowledged every record (acks=all).",
            buckets=LATENCY_BUCKETS_SECONDS, registry=r,
        )
        self.events_published = Counter(
            "crisis_ingest_events_published", "Events published to crisis.calls.v1 after a 202, by center and type.",
            ["center_id", "type"], registry=r,
        )
        self.kafka_ready = Gauge(
            "crisis_ingest_kafka_ready", "1 while the ingest service's producer reaches the brokers, else 0.",
            registry=r,
        )

    def start_at_zero(self, center_ids: Iterable[str]) -> None:
        """Create every label combination now, so rate() alerts see the first increment."""
        center_ids = tuple(center_ids)
        for endpoint in INGEST_ENDPOINTS:
            self.request_bytes.labels(endpoint)
            self.request_duration.labels(endpoint)
            for status in INGEST_STATUSES:
                for center_id in (*center_ids, UNAUTHENTICATED_LABEL):
                    self.requests.labels(endpoint, status, center_id)
        for center_id in center_ids:
            for event_type in CALL_EVENT_TYPES:
                self.events_published.labels(center_id, event_type)
