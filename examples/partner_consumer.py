#!/usr/bin/env python3
"""A partner's consumer of crisis-pipeline's topics: prints each triage decision, SLA event and follow-up event
as it comes, one line each, and every event only once.

Standalone on purpose (Python 3.11 and ``pip install aiokafka``, none of our code), so a partner can copy it.
What it shows (README, "For partners: consuming our topics"):

- its own consumer group, so it never takes records from the pipeline or from another partner;
- offsets committed only after the records were handled: at-least-once, nothing is skipped after a crash;
- deduplication by ``event_id``: a record delivered twice (our worker replays a batch after a crash, or this
  consumer re-reads records it handled but had not committed) is printed once. The memory of seen ids is
  bounded: duplicates arrive close to the original, so the latest ids suffice; to keep what you store
  duplicate-free for ever, make ``event_id`` a unique key in your own database instead;
- unknown event types and fields are tolerated: new ones may be added to a topic without a new version.

    python examples/partner_consumer.py --bootstrap kafka:9092 --group-id reporting-team --from-beginning

Settings come from the arguments, else the environment: ``KAFKA_BOOTSTRAP``, ``CRISIS_TOPIC_PREFIX``,
``PARTNER_GROUP_ID``; on a secured deployment also ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_USERNAME``,
``KAFKA_SASL_PASSWORD``, ``KAFKA_SSL_CAFILE`` (see ``connection_settings``). Stops cleanly on Ctrl-C
or SIGTERM and prints a summary on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer

# The partner topics (docs/asyncapi.json describes every field). Each is keyed by call_id.
TRIAGE = "crisis.triage.v1"
SLA = "crisis.sla.v1"
FOLLOWUPS = "crisis.followups.v1"
PARTNER_TOPICS = (TRIAGE, SLA, FOLLOWUPS)
DEFAULT_SEEN_IDS = 100_000


def connection_settings(bootstrap: str, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Everything about reaching the brokers, in one place. A secured deployment (the compose stack:
    SASL/SCRAM over TLS, with access control) gives each partner a user of its own, allowed to read the
    partner topics in consumer groups named after it: ``KAFKA_SECURITY_PROTOCOL=SASL_SSL``,
    ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``, and ``KAFKA_SSL_CAFILE`` (the deployment's CA)."""
    settings: dict[str, Any] = {"bootstrap_servers": bootstrap}
    protocol = environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    settings["security_protocol"] = protocol
    if protocol.startswith("SASL_"):
        settings.update(sasl_mechanism=environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512").upper(),
                        sasl_plain_username=environ["KAFKA_SASL_USERNAME"],
                        sasl_plain_password=environ["KAFKA_SASL_PASSWORD"])
    if protocol in ("SSL", "SASL_SSL"):  # the broker's certificate and host name are always checked
        settings["ssl_context"] = ssl.create_default_context(cafile=environ.get("KAFKA_SSL_CAFILE") or None)
    return settings


class SeenIds:
    """The latest ``capacity`` event ids, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        """True the first time an id is seen (then it is remembered), False for a duplicate."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


def _flags(event: dict[str, Any]) -> str:
    return ",".join(event.get("safety_flags") or []) or "none"


def describe_triage(event: dict[str, Any]) -> str:
    """A decision: the route and why; an override: from which route, by whom, approved by whom."""
    if event.get("type") == "triage.overridden":
        approval = (f" approved by {event['approved_by']} ({event.get('approved_by_role')})"
                    if event.get("approved_by") else "")
        return (f"override {event.get('previous_route')} -> {event.get('route')} by {event.get('overridden_by')}"
                f"{approval}")
    second = ", co-responder team requested as second response" if event.get("second_response_requested") else ""
    return (f"route {event.get('route')}{second}; reasons {','.join(event.get('reasons') or [])}; "
            f"safety flags {_flags(event)}; policy {event.get('policy_name')} {event.get('policy_version')}")


def describe_sla(event: dict[str, Any]) -> str:
    """A warning or a breach: the deadline passed; met or late arrival: how long the team took."""
    response = f"{event.get('response')} response"
    if event.get("arrival_seconds") is not None:
        return f"{response}: co-responder team arrived after {float(event['arrival_seconds']):.0f} s"
    return f"{response}: deadline {event.get('deadline_at')} passed, team not there yet"


def describe_followup(event: dict[str, Any]) -> str:
    """What happened to the follow-up after a contact ended."""
    kind, contact = event.get("type"), f"after {event.get('contact')} contact"
    if kind == "followup.due":
        return f"{contact}: attempt {event.get('attempt_number')} due by {event.get('due_at')}"
    if kind == "followup.overdue":
        return f"{contact}: attempt {event.get('attempt_number')} due by {event.get('due_at')} not recorded"
    if kind == "followup.completed":
        return f"{contact}: completed, linkage {event.get('linkage')}, {event.get('days_from_contact')} days after"
    if kind == "followup.dropped_out":
        return f"{contact}: dropped out after {event.get('attempts_made')} attempts"
    return f"{contact}: {kind} after {event.get('attempts_made')} attempts"


DESCRIBE: dict[str, Callable[[dict[str, Any]], str]] = {
    TRIAGE: describe_triage, SLA: describe_sla, FOLLOWUPS: describe_followup,
}


def event_line(topic: str, event: dict[str, Any], prefix: str = "") -> str:
    """One readable line: the event's own time, its type, the call, and what it means."""
    at = event.get("occurred_at") or event.get("decided_at") or "-"
    describe = DESCRIBE.get(topic.removeprefix(prefix))
    meaning = describe(event) if describe else ""
    district = f" [{event['district']}]" if event.get("district") else ""
    return f"{at}  {event.get('type', '?'):<20} {event.get('call_id', '?')}{district}  {meaning}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Print crisis-pipeline's decisions, SLA events and follow-up "
                                                 "events as they come, each event once.")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092"),
                        help="brokers, comma-separated (default $KAFKA_BOOTSTRAP or localhost:9092)")
    parser.add_argument("--topic-prefix", default=os.environ.get("CRISIS_TOPIC_PREFIX", ""),
                        help="the deployment's topic prefix, if any (default $CRISIS_TOPIC_PREFIX)")
    parser.add_argument("--group-id", default=os.environ.get("PARTNER_GROUP_ID", "partner-example"),
                        help="your own consumer group (default $PARTNER_GROUP_ID or partner-example)")
    parser.add_argument("--from-beginning", action="store_true",
                        help="a new group starts at the oldest records kept (default: only new ones)")
    parser.add_argument("--seen-ids", type=int, default=DEFAULT_SEEN_IDS,
                        help=f"how many recent event ids to remember for deduplication (default {DEFAULT_SEEN_IDS})")
    return parser.parse_args(argv)


async def consume(args: argparse.Namespace, stop: asyncio.Event) -> tuple[int, int]:
    """Print every new event until ``stop`` is set; returns (events printed, duplicates skipped)."""
    topics = [args.topic_prefix + topic for topic in PARTNER_TOPICS]
    consumer = AIOKafkaConsumer(
        *topics, **connection_settings(args.bootstrap), group_id=args.group_id,
        # Commit only what was handled (below), never in the background before it was.
        enable_auto_commit=False,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
    )
    seen = SeenIds(args.seen_ids)
    printed = duplicates = 0
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:  # in order within a partition: a call's events in the order we sent them
                    try:
                        event = json.loads(record.value)
                        event_id = event["event_id"]
                    except (TypeError, ValueError, KeyError):
                        print(f"skipped a record that is not one of our events at {record.topic}/"
                              f"{record.partition}/{record.offset}", file=sys.stderr, flush=True)
                        continue
                    if not seen.first_time(event_id):
                        duplicates += 1
                        continue
                    print(event_line(record.topic, event, args.topic_prefix), flush=True)
                    printed += 1
            if batches:
                await consumer.commit()  # after handling: a crash before this only repeats records (deduplicated)
    finally:
        await consumer.stop()
    return printed, duplicates


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no loop signal handlers
            loop.add_signal_handler(signum, stop.set)
    printed, duplicates = await consume(args, stop)
    print(f"{printed} events printed, duplicates skipped: {duplicates}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
