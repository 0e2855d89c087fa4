"""examples/partner_consumer.py against real Apache Kafka, run as the README says: it prints one line for every
event a real worker published on the partner topics (decisions, an override, SLA events, follow-ups), the
README's sample lines among them, and a record delivered twice once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crisis.services import REPO_ROOT
from sinks.queries import stored_events
from streams import topics
from tests.conftest import PipelineEnv, wait_until
from tests.integration.kafka_io import as_records, publish, read_all
from tests.readme_examples import readme_example

pytestmark = pytest.mark.integration

PARTNER_TOPICS = (topics.TRIAGE, topics.SLA, topics.FOLLOWUPS)
LINE = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)")  # time, type, call id


def readme_command() -> list[str]:
    """The README's command line (its settings from the environment, which the test sets), as arguments."""
    (line,) = [line for line in readme_example("partner-consumer").splitlines() if line.startswith("python ")]
    command = shlex.split(line, comments=True)
    assert command[:2] == ["python", "examples/partner_consumer.py"], command
    return [sys.executable, str(REPO_ROOT / command[1]), *command[2:]]


def readme_sample_lines() -> list[str]:
    """The sample output printed in the README below the command."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- example: partner-consumer\b.*?```bash\n.*?```\n\n```\n(.*?)```", text, re.DOTALL)
    assert match, "README.md has no sample output after the partner-consumer example"
    return match.group(1).splitlines()


def scenario(at: datetime) -> list[dict[str, Any]]:
    """A co-responder team arriving 25 minutes late, then the call closed (a follow-up due); a diversion-line
    call a dispatcher overrides to the co-responder team, closed on the phone."""
    def event(kind: str, call: str, seq: int, minutes: float, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"{call}:{seq}", "call_id": call,
                "occurred_at": (at + timedelta(minutes=minutes)).isoformat(), **fields}

    received = {"center_id": "stl-911", "nature_code": "MENTAL", "district": "district-4",
                "concerns": ["mental_health"], "caller_phone": "+13145550123"}
    late, phone = "stl-911:p-late", "stl-911:p-phone"
    return [
        event("call.received", late, 0, 0, **received, person_in_crisis_is_caller=False),
        event("unit.dispatched", late, 1, 1, unit_id="CRU4", unit_type="co_responder"),
        event("unit.arrived", late, 2, 25, unit_id="CRU4", unit_type="co_responder"),
        event("call.closed", late, 3, 60, disposition="stabilized_on_scene"),
        event("call.received", phone, 0, 2, **received, person_in_crisis_is_caller=True),
        event("triage.overridden", phone, 1, 3, route="co_responder", overridden_by="dispatcher-3",
              reason="caller asked for someone to come"),
        event("call.closed", phone, 2, 12, disposition="safety_plan"),
    ]


async def _lines_until(process: asyncio.subprocess.Process, lines: list[str], done: Any, seconds: float) -> None:
    """Read the example's output into ``lines`` until ``done(lines)``; fail with what it printed otherwise."""
    assert process.stdout is not None
    try:
        async with asyncio.timeout(seconds):
            while not done(lines):
                line = await process.stdout.readline()
                assert line, f"the example exited (code {await process.wait()}) after printing: {lines}"
                lines.append(line.decode().rstrip("\n"))
    except TimeoutError:
        raise AssertionError(f"the example printed only: {lines}") from None


def _printed(lines: list[str]) -> Counter[tuple[str, str]]:
    return Counter((m.group(2), m.group(3)) for line in lines if (m := LINE.match(line)))


async def test_the_example_consumer_prints_every_partner_event_once(pipeline_env: PipelineEnv):
    env, bootstrap = pipeline_env, pipeline_env.settings.kafka_bootstrap
    env.worker(CRISIS_TIMER_CLOCK="event")  # deadlines by event time: the late team's breach needs no waiting
    events = scenario(datetime(2026, 11, 2, 15, 0, tzinfo=UTC))
    await publish(bootstrap, env.topic(topics.CALLS), as_records(events))
    # Calls and lifecycle events (an override is stored as a decision): the last batch is stored, so published.
    stored = sum(1 for event in events if event["type"] != "triage.overridden")
    await wait_until(lambda: _stored(env.settings.database_url, stored), 60)

    published = {topic: await read_all(bootstrap, env.topic(topic)) for topic in PARTNER_TOPICS}
    expected = Counter((event["type"], event["call_id"])
                       for records in published.values() for event in map(json.loads, (r.value for r in records)))
    assert {kind for kind, _ in expected} >= {"triage.decided", "triage.overridden", "sla.warning", "sla.breached",
                                              "sla.late_arrival", "followup.due"}, expected

    settings = {"KAFKA_BOOTSTRAP": bootstrap, "CRISIS_TOPIC_PREFIX": env.settings.topic_prefix,
                "PARTNER_GROUP_ID": f"partner-test-{uuid.uuid4().hex[:8]}"}
    process = await asyncio.create_subprocess_exec(
        *readme_command(), env={**os.environ, **settings}, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []
    try:
        await _lines_until(process, lines, lambda lines: _printed(lines) == expected, 60)

        # The worker replaying a batch after a crash publishes the same record again: printed once. A new
        # event after it on the same partition shows the example has read past the duplicate.
        duplicate = published[topics.SLA][0]
        sentinel = {**json.loads(duplicate.value), "event_id": "sentinel", "call_id": "stl-911:p-sentinel"}
        await publish(bootstrap, env.topic(topics.SLA), [(duplicate.key.decode(), duplicate.value),
                                                         (duplicate.key.decode(), json.dumps(sentinel).encode())],
                      partition=duplicate.partition)
        await _lines_until(process, lines, lambda lines: "stl-911:p-sentinel" in lines[-1], 30)
        assert _printed(lines) == expected + Counter({(sentinel["type"], "stl-911:p-sentinel"): 1}), lines
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert f"{len(lines)} events printed, duplicates skipped: 1" in stderr.decode(), stderr.decode()

    text = "\n".join(lines)
    assert "+1314" not in text  # partner topics carry no phone number, and the example prints none
    assert "override diversion_line -> co_responder by dispatcher-3" in text, text
    assert "co-responder team arrived after 1500 s" in text, text  # requested at 15:00, there at 15:25
    for sample in readme_sample_lines():
        # The policy's version changes with the policy: the rest of each line is as the README shows it.
        assert any(line.split("; policy ")[0] == sample.split("; policy ")[0] for line in lines), (sample, text)


async def _stored(db: str, count: int) -> bool:
    return await stored_events(db, "stl-911:p-") >= count
