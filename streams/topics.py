"""The topics we read and write. Every topic is keyed by ``call_id``, except the outcomes feed (``center_id``)."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from pydantic import BaseModel

from schemas.deadletter import DeadLetter
from schemas.followups import FollowupEvent
from schemas.outcomes import OutcomesDaily
from schemas.sla import SlaEvent
from schemas.triage import TriageDecision
from streams.config import Settings
from streams.security import kafka_client_options

log = logging.getLogger(__name__)

CALLS = "crisis.calls.v1"  # inbound: every lifecycle event of a call, from CAD integrations
TRIAGE = "crisis.triage.v1"  # partner topic: triage decisions and overrides
SLA = "crisis.sla.v1"  # partner topic: co-responder arrival warnings, breaches, arrivals
FOLLOWUPS = "crisis.followups.v1"  # partner topic: follow-ups due, overdue, completed, dropped out, expired
DEADLETTER = "crisis.deadletter.v1"  # internal: rejected input with reason and original bytes
OUTCOMES = "crisis.outcomes.v1"  # partner topic: each center's daily outcome counts, suppressed, keyed by center_id

ALL_TOPICS = (CALLS, TRIAGE, SLA, FOLLOWUPS, DEADLETTER, OUTCOMES)
# What partner systems may read (deploy/kafka/access.sh grants exactly these): pseudonymous, no free text.
PARTNER_TOPICS = (TRIAGE, SLA, FOLLOWUPS, OUTCOMES)
# Topics that carry personal data (caller phone numbers, original bytes): their retention is ours to set.
PERSONAL_DATA_TOPICS = (CALLS, DEADLETTER)

# Where each event we emit is published: one line per event model.
EMITTED_TOPICS: dict[type[BaseModel], str] = {
    TriageDecision: TRIAGE,
    SlaEvent: SLA,
    FollowupEvent: FOLLOWUPS,
    DeadLetter: DEADLETTER,
    OutcomesDaily: OUTCOMES,
}


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """Settings of a topic we create: ``min.insync.replicas``, and retention where it holds personal data."""
    configs = {"min.insync.replicas": str(settings.min_insync_replicas)}
    if name in PERSONAL_DATA_TOPICS and settings.personal_topic_retention_hours > 0:
        configs["retention.ms"] = str(int(settings.personal_topic_retention_hours * 3_600_000))
    return configs


async def ensure_topics(settings: Settings, replication_factor: int | None = None) -> None:
    """Create our topics with ``settings.partitions`` partitions where they do not exist yet.

    Explicit creation rather than broker auto-creation: the partition count decides how far the
    pipeline can scale out, so it must not silently default to the broker's ``num.partitions``.
    Replication comes from ``settings`` (``CRISIS_REPLICATION_FACTOR``, ``CRISIS_MIN_INSYNC_REPLICAS``)
    unless ``replication_factor`` is given.
    """
    replicas = replication_factor if replication_factor is not None else settings.replication_factor
    if settings.min_insync_replicas > replicas:
        # Kafka would accept such a topic and then refuse every acks=all write to it.
        raise ValueError(f"CRISIS_MIN_INSYNC_REPLICAS={settings.min_insync_replicas} is more than the replication "
                         f"factor {replicas}: no write could ever be acknowledged")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [settings.topic(name) for name in ALL_TOPICS if settings.topic(name) not in existing]
        if missing:
            # Another worker may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([
                    NewTopic(settings.topic(name), settings.partitions, replicas,
                             topic_configs=topic_configs(settings, name))
                    for name in ALL_TOPICS if settings.topic(name) in missing
                ])
            log.info("created topics %s with %d partitions, replication factor %d", missing, settings.partitions,
                     replicas)
    finally:
        await admin.close()
