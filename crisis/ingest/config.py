"""Settings of `crisis ingest`, from environment variables (README, "Configuration")."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class IngestSettings:
    """What `crisis ingest` listens on, who may post, and its limits (README, "Configuration")."""

    host: str = "127.0.0.1"
    port: int = 8080
    metrics_port: int = 9109
    tokens_file: str | None = None
    tokens: str | None = None
    max_body_bytes: int = 1024 * 1024
    max_batch_events: int = 1000
    publish_timeout_seconds: float = 5.0
    retry_after_seconds: int = 5
    health_interval_seconds: float = 2.0
    tls_cert: str | None = None
    tls_key: str | None = None

    @classmethod
    def from_env(cls) -> IngestSettings:
        """The settings from ``CRISIS_INGEST_*`` variables, defaults for the rest."""
        return cls(
            host=_env("CRISIS_INGEST_HOST", cls.host),
            port=int(_env("CRISIS_INGEST_PORT", str(cls.port))),
            metrics_port=int(_env("CRISIS_INGEST_METRICS_PORT", str(cls.metrics_port))),
            tokens_file=os.environ.get("CRISIS_INGEST_TOKENS_FILE") or None,
            tokens=os.environ.get("CRISIS_INGEST_TOKENS") or None,
            max_body_bytes=int(_env("CRISIS_INGEST_MAX_BODY_BYTES", str(cls.max_body_bytes))),
            max_batch_events=int(_env("CRISIS_INGEST_MAX_BATCH_EVENTS", str(cls.max_batch_events))),
            publish_timeout_seconds=float(_env("CRISIS_INGEST_PUBLISH_TIMEOUT_SECONDS",
                                               str(cls.publish_timeout_seconds))),
            retry_after_seconds=int(_env("CRISIS_INGEST_RETRY_AFTER_SECONDS", str(cls.retry_after_seconds))),
            health_interval_seconds=float(_env("CRISIS_INGEST_HEALTH_INTERVAL_SECONDS",
                                               str(cls.health_interval_seconds))),
            tls_cert=os.environ.get("CRISIS_INGEST_TLS_CERT") or None,
            tls_key=os.environ.get("CRISIS_INGEST_TLS_KEY") or None,
        )
