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

log = logging.getLogger(__name__)

CALLS = "crisis.calls.v1"  # inbound: every lifecycle event of a call, from CAD integrations
TRIAGE = "crisis.triage.v1"  # partner topic: triage decisions and overrides
SLA = "crisis.sla.v1"  # partner topic: co-responder arrival warnings, breaches, arrivals
FOLLOWUPS = "crisis.followups.v1"  # partner topic: follow-ups due, overdue, completed, dropped out, expired
DEADLETTER = "crisis.deadletter.v1"  # internal: rejected input with reason and original bytes
OUTCOMES = "crisis.outcomes.v1"  # partner topic: each center's daily outcome counts, suppressed, keyed by center_id

ALL_TOPICS = (CALLS, TRIAGE, SLA, FOLLOWUPS, DEADLETTER, OUTCOMES)

# Where each event we emit is published: one line per event model.
EMITTED_TOPICS: dict[type[BaseModel], str] = {
    TriageDecision: TRIAGE,
    SlaEvent: SLA,
    FollowupEvent: FOLLOWUPS,
    DeadLetter: DEADLETTER,
    OutcomesDaily: OUTCOMES,
}


async def ensure_topics(settings: Settings, replication_factor: int = 1) -> None:
    """Create our topics with ``settings.partitions`` partitions where they do not exist yet.

    Explicit creation rather than broker auto-creation: the partition count decides how far the
    pipeline can scale out, so it must not silently default to the broker's ``num.partitions``.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [settings.topic(name) for name in ALL_TOPICS if settings.topic(name) not in existing]
        if missing:
            # Another worker may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name, settings.partitions, replication_factor) for name in missing]
                )
            log.info("created topics %s with %d partitions", missing, settings.partitions)
    finally:
        await admin.close()
