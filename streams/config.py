"""Configuration from environment variables, with defaults that work on a laptop.

Every variable is documented in the README ("Configuration").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "localhost:9092"
    database_url: str = "postgresql://postgres@localhost:5432/crisis"
    app_id: str = "crisis-pipeline"
    topic_prefix: str = ""
    partitions: int = 4
    metrics_port: int = 9108
    policy_path: str | None = None
    # required by `crisis worker`: a known key makes person_ref reversible. repr=False: never in a log line.
    pseudonym_key: str = field(default="", repr=False)
    timer_clock: Literal["wall", "event"] = "wall"
    timer_tick_seconds: float = 1.0
    timer_lateness_seconds: float = 5.0
    # Event times outside [event_time_not_before, wall clock + event_time_max_ahead_seconds] are refused.
    event_time_not_before: str = "1900-01-01T00:00:00+00:00"
    event_time_max_ahead_seconds: float = 86400.0
    batch_max_events: int = 1000
    batch_within_seconds: float = 0.02
    broker_session_timeout_seconds: float = 30.0
    log_level: str = "info"
    log_format: Literal["json", "text"] = "json"
    # CloudEvents `source` of every record we produce (a URI reference naming this deployment).
    event_source: str = "/crisis-pipeline"
    # Outcomes: a day's feed record goes out this long after the day ended (event time, or wall clock live).
    outcomes_lateness_seconds: float = 7200.0
    outcomes_feed_interval_seconds: float = 30.0
    suppression_threshold: int = 10  # counts from 1 to this are never shown in reports or on the feed
    report_metrics_file: str | None = None
    # Kafka client security, the same for every client we run (streams.security builds their options).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    # Idempotent producers (a retry never writes twice). Off only for a broker without them: the demo's tansu.
    kafka_idempotent_producer: bool = True
    # The topics we create: a production cluster keeps three copies and refuses writes below two.
    replication_factor: int = 1
    min_insync_replicas: int = 1
    # How long Kafka keeps the topics that carry personal data (inbound, dead letters); 0: the broker's default.
    personal_topic_retention_hours: float = 0.0
    # `crisis purge`: days a caller's phone number and a dispatcher's free text are kept in Postgres
    # (longer than the follow-up window: a clinician calls back), and the raw bytes of a dead letter.
    pii_retention_days: float = 90.0
    dead_letter_retention_days: float = 30.0

    @classmethod
    def from_env(cls) -> Settings:
        clock = _env("CRISIS_TIMER_CLOCK", "wall")
        if clock not in ("wall", "event"):
            raise ValueError(f"CRISIS_TIMER_CLOCK must be 'wall' or 'event', got {clock!r}")
        log_format = _env("CRISIS_LOG_FORMAT", cls.log_format)
        if log_format not in ("json", "text"):
            raise ValueError(f"CRISIS_LOG_FORMAT must be 'json' or 'text', got {log_format!r}")
        settings = cls(
            kafka_bootstrap=_env("KAFKA_BOOTSTRAP", cls.kafka_bootstrap),
            database_url=_env("DATABASE_URL", cls.database_url),
            app_id=_env("CRISIS_APP_ID", cls.app_id),
            topic_prefix=_env("CRISIS_TOPIC_PREFIX", cls.topic_prefix),
            partitions=int(_env("CRISIS_PARTITIONS", str(cls.partitions))),
            metrics_port=int(_env("CRISIS_METRICS_PORT", str(cls.metrics_port))),
            policy_path=os.environ.get("CRISIS_POLICY") or None,
            pseudonym_key=_env("CRISIS_PSEUDONYM_KEY", cls.pseudonym_key),
            timer_clock=clock,  # type: ignore[arg-type]
            timer_tick_seconds=float(_env("CRISIS_TIMER_TICK_SECONDS", str(cls.timer_tick_seconds))),
            timer_lateness_seconds=float(_env("CRISIS_TIMER_LATENESS_SECONDS", str(cls.timer_lateness_seconds))),
            event_time_not_before=_env("CRISIS_EVENT_TIME_NOT_BEFORE", cls.event_time_not_before),
            event_time_max_ahead_seconds=float(
                _env("CRISIS_EVENT_TIME_MAX_AHEAD_SECONDS", str(cls.event_time_max_ahead_seconds))
            ),
            batch_max_events=int(_env("CRISIS_BATCH_MAX_EVENTS", str(cls.batch_max_events))),
            batch_within_seconds=float(_env("CRISIS_BATCH_WITHIN_SECONDS", str(cls.batch_within_seconds))),
            broker_session_timeout_seconds=float(
                _env("CRISIS_BROKER_SESSION_TIMEOUT_SECONDS", str(cls.broker_session_timeout_seconds))
            ),
            log_level=_env("CRISIS_LOG_LEVEL", cls.log_level),
            log_format=log_format,  # type: ignore[arg-type]
            event_source=_env("CRISIS_EVENT_SOURCE", cls.event_source),
            outcomes_lateness_seconds=float(
                _env("CRISIS_OUTCOMES_LATENESS_SECONDS", str(cls.outcomes_lateness_seconds))),
            outcomes_feed_interval_seconds=float(
                _env("CRISIS_OUTCOMES_FEED_INTERVAL_SECONDS", str(cls.outcomes_feed_interval_seconds))),
            suppression_threshold=int(_env("CRISIS_SUPPRESSION_THRESHOLD", str(cls.suppression_threshold))),
            report_metrics_file=os.environ.get("CRISIS_REPORT_METRICS_FILE") or None,
            kafka_security_protocol=_env("KAFKA_SECURITY_PROTOCOL", cls.kafka_security_protocol).upper(),
            kafka_sasl_mechanism=_env("KAFKA_SASL_MECHANISM", cls.kafka_sasl_mechanism).upper(),
            kafka_sasl_username=_env("KAFKA_SASL_USERNAME", cls.kafka_sasl_username),
            kafka_sasl_password=_env("KAFKA_SASL_PASSWORD", cls.kafka_sasl_password),
            kafka_ssl_cafile=_env("KAFKA_SSL_CAFILE", cls.kafka_ssl_cafile),
            kafka_ssl_certfile=_env("KAFKA_SSL_CERTFILE", cls.kafka_ssl_certfile),
            kafka_ssl_keyfile=_env("KAFKA_SSL_KEYFILE", cls.kafka_ssl_keyfile),
            kafka_idempotent_producer=_env("KAFKA_IDEMPOTENT_PRODUCER", "true").lower() not in ("false", "0", "no"),
            replication_factor=int(_env("CRISIS_REPLICATION_FACTOR", str(cls.replication_factor))),
            min_insync_replicas=int(_env("CRISIS_MIN_INSYNC_REPLICAS", str(cls.min_insync_replicas))),
            personal_topic_retention_hours=float(
                _env("CRISIS_PERSONAL_TOPIC_RETENTION_HOURS", str(cls.personal_topic_retention_hours))
            ),
            pii_retention_days=float(_env("CRISIS_PII_RETENTION_DAYS", str(cls.pii_retention_days))),
            dead_letter_retention_days=float(
                _env("CRISIS_DEAD_LETTER_RETENTION_DAYS", str(cls.dead_letter_retention_days))
            ),
        )
        settings.earliest_event_time  # noqa: B018 - refuse a bad value now, not at the first event
        if settings.suppression_threshold < 0:
            raise ValueError("CRISIS_SUPPRESSION_THRESHOLD must be 0 or more")
        return settings

    def as_env(self) -> dict[str, str]:
        """These settings as the environment of a worker process (demo, tests, benchmark)."""
        return {
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            "CRISIS_APP_ID": self.app_id,
            "CRISIS_TOPIC_PREFIX": self.topic_prefix,
            "CRISIS_PARTITIONS": str(self.partitions),
            "CRISIS_METRICS_PORT": str(self.metrics_port),
            "CRISIS_PSEUDONYM_KEY": self.pseudonym_key,
            "CRISIS_TIMER_CLOCK": self.timer_clock,
            "CRISIS_TIMER_TICK_SECONDS": str(self.timer_tick_seconds),
            "CRISIS_TIMER_LATENESS_SECONDS": str(self.timer_lateness_seconds),
            "CRISIS_EVENT_TIME_NOT_BEFORE": self.event_time_not_before,
            "CRISIS_EVENT_TIME_MAX_AHEAD_SECONDS": str(self.event_time_max_ahead_seconds),
            "CRISIS_BATCH_MAX_EVENTS": str(self.batch_max_events),
            "CRISIS_BATCH_WITHIN_SECONDS": str(self.batch_within_seconds),
            "CRISIS_BROKER_SESSION_TIMEOUT_SECONDS": str(self.broker_session_timeout_seconds),
            "CRISIS_LOG_LEVEL": self.log_level,
            "CRISIS_LOG_FORMAT": self.log_format,
            "CRISIS_EVENT_SOURCE": self.event_source,
            "CRISIS_OUTCOMES_LATENESS_SECONDS": str(self.outcomes_lateness_seconds),
            "CRISIS_OUTCOMES_FEED_INTERVAL_SECONDS": str(self.outcomes_feed_interval_seconds),
            "CRISIS_SUPPRESSION_THRESHOLD": str(self.suppression_threshold),
            "KAFKA_SECURITY_PROTOCOL": self.kafka_security_protocol,
            "KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
            "KAFKA_IDEMPOTENT_PRODUCER": "true" if self.kafka_idempotent_producer else "false",
            "CRISIS_REPLICATION_FACTOR": str(self.replication_factor),
            "CRISIS_MIN_INSYNC_REPLICAS": str(self.min_insync_replicas),
            "CRISIS_PERSONAL_TOPIC_RETENTION_HOURS": str(self.personal_topic_retention_hours),
            "CRISIS_PII_RETENTION_DAYS": str(self.pii_retention_days),
            "CRISIS_DEAD_LETTER_RETENTION_DAYS": str(self.dead_letter_retention_days),
            **({"CRISIS_POLICY": self.policy_path} if self.policy_path else {}),
        }

    @property
    def earliest_event_time(self) -> datetime:
        """``event_time_not_before`` parsed (an RFC 3339 time with an offset)."""
        moment = datetime.fromisoformat(self.event_time_not_before)
        if moment.tzinfo is None:
            raise ValueError(f"CRISIS_EVENT_TIME_NOT_BEFORE needs a UTC offset, got {self.event_time_not_before!r}")
        return moment

    def topic(self, name: str) -> str:
        """The full name of one of our topics (a prefix isolates test runs on a shared broker)."""
        return f"{self.topic_prefix}{name}"
