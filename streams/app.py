"""The Faust application and the inbound topic, configured from the environment."""

from __future__ import annotations

import tempfile
from pathlib import Path

import faust

from streams import topics
from streams.config import Settings
from streams.security import faust_options

settings = Settings.from_env()


def broker_urls(bootstrap: str) -> list[str]:
    """``host1:9092,host2:9092`` -> Faust broker URLs."""
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


app = faust.App(
    settings.app_id,
    broker=broker_urls(settings.kafka_bootstrap),
    store="memory://",  # no Faust tables: durable state lives in Postgres
    # Faust still makes an (empty) data folder; by default "<app id>-data" in the working directory.
    datadir=str(Path(tempfile.gettempdir()) / f"faust-{settings.app_id}"),
    key_serializer="raw",
    value_serializer="raw",  # we decode with pydantic ourselves, to dead-letter what fails
    topic_partitions=settings.partitions,
    web_enabled=False,  # metrics are served by prometheus-client (CRISIS_METRICS_PORT)
    stream_wait_empty=False,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_session_timeout=settings.broker_session_timeout_seconds,
    broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_seconds / 3),
    broker_rebalance_timeout=settings.broker_session_timeout_seconds,
    broker_commit_interval=1.0,
    autodiscover=False,
    # SASL/TLS like every other client (streams.security). Faust's own producer sends nothing here:
    # every record we emit goes through streams.publisher.KafkaPublisher (acks=all, idempotent).
    **faust_options(settings),
)

calls_topic = app.topic(settings.topic(topics.CALLS), key_serializer="raw", value_serializer="raw")
