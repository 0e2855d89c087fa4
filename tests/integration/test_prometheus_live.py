"""A real Prometheus scrapes a running worker (and the ingest service) under load, with the shipped scrape
configuration and alert rules; every expression of the Grafana dashboard and of the alert rules is evaluated
through its HTTP API. A panel that shows nothing is a bug, and so is an alert that can never see its metric.

The load is a simulated week played live on the wall clock, compressed 50,400 times (a day in 1.7 s) with the
policy's durations compressed alike (as in test_replay_equivalence.py), so SLA warnings and breaches, follow-ups
due, overdue, completed and dropped out all happen in seconds; beside it the records the simulator does not make:
dispatcher overrides (an ordinary one, an approved and a refused one lowering police involvement on a call with
a weapon), an override and an arrival for unknown calls, a call from the future and malformed records; calls
posted through the ingest service (accepted, refused, unauthenticated); two calls of yesterday, whose day the
outcomes feed publishes, then revises after a late arrival; and an outcomes report run, whose metrics file is
served as node_exporter's textfile collector would serve it.

Panels that may legitimately show 0 under this load are listed in ``MAY_BE_ZERO`` with the reason; they still
must return a series (a 0 is drawn, nothing is not). Every other panel must show a value above 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from crisis.ingest.auth import hash_token, new_token
from crisis.publish import publish_events, retime
from crisis.services import REPO_ROOT, IngestProcess, free_port
from crisis.simulate import City, CitySettings, SimulatedEvent, malformed_events
from domain.policy import load_policy
from sinks.queries import stored_events
from streams import topics
from tests.conftest import PipelineEnv, wait_until
from tests.integration.prometheus_server import PrometheusServer, running_prometheus
from tests.integration.test_replay_equivalence import compressed_policy
from tests.unit.test_grafana_dashboard import _dashboard, _query_panels

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
# Compressed times make the arrival and first-attempt quantiles fall in their histograms' first bucket (60 s,
# 1 h): those panels show a value (an interpolation inside that bucket), which is what is checked here.
SPEEDUP = 50_400.0
SIMULATED_DAYS = 7
CALLS_PER_HOUR = 6.0

# Panels that may show 0 under this load, and why: a 0-valued series is their healthy value.
MAY_BE_ZERO = {
    "Running SLA timers": "a gauge of the teams awaited right now: by the end every team has arrived or breached",
    "Batch retries (last 15 min)": "retries follow transient Postgres or Kafka failures, and none is provoked",
    "Batch retries by stage (per 5 min)": "retries follow transient Postgres or Kafka failures, and none is provoked",
    "Timer failures and stuck dead letters": "only a failing timer kind or a dead letter that cannot be stored "
                                             "(bugs) moves them",
    "Consumer lag by partition": "the worker keeps up with this load: its partitions are read to the end",
    "Outcome records waiting": "the feed's outbox, empty again once each record is published",
    "Feed errors (last hour)": "rounds of the feed fail only on a Postgres or Kafka error, and none is provoked",
}
# Label values of a panel that must each show a value above 0 (the load makes each of them).
EACH_ABOVE_ZERO = {
    "Decisions per second by route": ("route", {"diversion_line", "co_responder", "emergency"}),
    "Overrides lowering police involvement": ("outcome", {"approved", "refused"}),
    "SLA events per minute by type and response": ("type", {"sla.warning", "sla.breached", "sla.met",
                                                            "sla.late_arrival"}),
    "Timer firing lag p99 by kind": ("kind", {"sla_arrival", "followup"}),
    "Follow-up events per hour by type": ("type", {"followup.due", "followup.overdue", "followup.completed",
                                                   "followup.dropped_out"}),
    "Dead letters per minute by reason": ("reason", {"invalid_json", "unknown_type", "missing_field",
                                                     "unknown_call", "override_refused"}),
}
# Alerts this load must trip (their expression returns series); the others must at least select series.
TRIPPED_BY_THE_LOAD = {"CrisisDeadLettersRising", "CrisisSlaBreached", "CrisisSafetyOverrideRefused",
                       "CrisisSafetyOverrideApproved", "CrisisFollowupsOverdue"}
# The metric selectors of an expression: our metrics, the process collector's, and `up`.
SELECTOR = re.compile(r"\b((?:crisis|process)_[a-z_]+|up)(\{[^}]*\})?")


def scrape_config(worker_port: int, ingest_port: int, textfile_port: int) -> str:
    """The shipped deploy/prometheus/prometheus.yml with only the targets, the rules file's absolute path and
    1 s intervals changed: its job names are what the alerts and the dashboard select on."""
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    for old, new in (("scrape_interval: 15s", "scrape_interval: 1s"),
                     ("evaluation_interval: 15s", "evaluation_interval: 1s"),
                     ("- alerts.yml", f"- {PROMETHEUS_DIR / 'alerts.yml'}"),
                     ('dns_sd_configs:\n      - names: ["worker"]\n        type: A\n        port: 9108\n'
                      '        refresh_interval: 15s',
                      f'static_configs:\n      - targets: ["127.0.0.1:{worker_port}"]'),
                     ('"ingest:9109"', f'"127.0.0.1:{ingest_port}"'),
                     ('"node-exporter:9100"', f'"127.0.0.1:{textfile_port}"')):
        assert text.count(old) == 1, f"deploy/prometheus/prometheus.yml changed: {old!r} not found once"
        text = text.replace(old, new)
    return text


def _event(kind: str, call_id: str, seq: int, at: datetime, sent_at: datetime | None = None,
           **fields: Any) -> SimulatedEvent:
    body = {"type": kind, "event_id": f"{call_id}:{seq}", "call_id": call_id, "occurred_at": at.isoformat(),
            **fields}
    return SimulatedEvent(sent_at or at, call_id, json.dumps(body).encode(), kind)


def _received(call_id: str, at: datetime, sent_at: datetime | None = None, **flags: bool) -> SimulatedEvent:
    return _event("call.received", call_id, 0, at, sent_at, center_id="stl-911", nature_code="MENTAL",
                  district="district-1", concerns=["mental_health"], person_in_crisis_is_caller=True, **flags)


def _override(call_id: str, seq: int, at: datetime, route: str, **approval: str) -> SimulatedEvent:
    return _event("triage.overridden", call_id, seq, at, route=route, overridden_by="dispatcher-7",
                  reason="test", **approval)


def extras(at: datetime) -> list[SimulatedEvent]:
    """What the simulator does not send, after the two warm-up calls (``stl-911:prom-weapon`` routed to
    emergency for its weapon, ``stl-911:prom-phone`` to the diversion line)."""
    malformed = [SimulatedEvent(at, e.key, e.value, e.type) for e in malformed_events(7, seed=11)]
    return [
        _override("stl-911:prom-phone", 1, at, "co_responder"),  # raises police involvement: an ordinary override
        _override("stl-911:prom-weapon", 1, at, "co_responder", approved_by="sup-2", approved_by_role="supervisor"),
        _override("stl-911:prom-weapon", 2, at, "diversion_line"),  # lowers it again, without approver: refused
        _override("stl-911:prom-ghost", 1, at, "co_responder"),  # no such call: dead letter unknown_call
        _event("unit.arrived", "stl-911:prom-nobody", 1, at, unit_id="CRU9", unit_type="co_responder"),
        # A CAD clock two minutes fast: sent now, dated later (counted in crisis_events_from_future_total).
        _received("stl-911:prom-future", at + timedelta(minutes=2), sent_at=at),
        *malformed,
    ]


def _values(series: Iterable[dict[str, Any]]) -> list[float]:
    return [float(s["value"][1]) for s in series]


def _shows(series: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['metric'] or '{}'}={s['value'][1]}" for s in series) or "no series"


async def test_a_real_prometheus_sees_data_in_every_panel_and_every_alert_loads(pipeline_env: PipelineEnv,
                                                                              tmp_path):
    env = pipeline_env
    policy = compressed_policy(tmp_path, SPEEDUP)
    # The outcomes feed publishes a day one second after it ended, and looks every second.
    worker = env.worker(CRISIS_POLICY=str(policy), CRISIS_TIMER_CLOCK="wall", CRISIS_TIMER_LATENESS_SECONDS="0.5",
                        CRISIS_OUTCOMES_LATENESS_SECONDS="1", CRISIS_OUTCOMES_FEED_INTERVAL_SECONDS="1")
    token = new_token()
    ingest_metrics_port = free_port()
    ingest = IngestProcess({**env.settings.as_env(), "CRISIS_INGEST_PORT": str(free_port()),
                            "CRISIS_INGEST_METRICS_PORT": str(ingest_metrics_port),
                            "CRISIS_INGEST_TOKENS": f"stl-911={hash_token(token)}"}, name="prometheus-ingest")
    starting_ingest = asyncio.create_task(asyncio.to_thread(ingest.start))  # meanwhile, Prometheus starts
    report_metrics = tmp_path / "textfile" / "crisis_report.prom"
    report_metrics.parent.mkdir()
    try:
        async with serving_textfiles(report_metrics.parent) as textfile_port:
            config = scrape_config(int(worker.env["CRISIS_METRICS_PORT"]), ingest_metrics_port, textfile_port)
            async with running_prometheus(config) as prometheus:
                await starting_ingest
                await _run_load(env, prometheus)
                await _post_through_ingest(ingest.url, token)
                await _outcomes_of_yesterday(env, prometheus)
                await _run_a_report(env, report_metrics, prometheus)
                failures = await _check_dashboard(prometheus) + await _check_alerts(prometheus)
                assert worker.alive(), worker.log_tail()
                assert not failures, "\n".join(failures)
    finally:
        await asyncio.wait([starting_ingest])  # still starting if Prometheus failed: let it, then stop it
        ingest.stop()


@contextlib.asynccontextmanager
async def serving_textfiles(folder: Path) -> AsyncIterator[int]:
    """What node_exporter's textfile collector does with a folder of ``*.prom`` files: serve them as /metrics."""
    def read() -> str:
        return "".join(path.read_text() for path in sorted(folder.glob("*.prom")))

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=await asyncio.to_thread(read), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def _post_through_ingest(url: str, token: str) -> None:
    """Calls a CAD posts: accepted (202), refused with every field error (400), without a valid token (401)."""
    now = datetime.now(UTC)
    accepted = [json.loads(_received(f"stl-911:prom-http-{n}", now).value) for n in range(3)]
    async with aiohttp.ClientSession() as session:
        for body, auth, expected in ((accepted[0], token, 202), (accepted[1], token, 202), (accepted[2], token, 202),
                                     ({**accepted[0], "district": 7}, token, 400), (accepted[0], "wrong", 401)):
            headers = {"Authorization": f"Bearer {auth}", "Content-Type": "application/json"}
            async with session.post(f"{url}/v1/events", data=json.dumps(body), headers=headers) as response:
                assert response.status == expected, await response.text()


async def _outcomes_of_yesterday(env: PipelineEnv, prometheus: PrometheusServer) -> None:
    """Two calls of yesterday: the feed publishes their day; a late team arrival makes it publish a revision."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    team_call = _received("stl-911:prom-yesterday-team", yesterday)
    body = json.loads(team_call.value)
    body["person_in_crisis_is_caller"] = False  # a third-party call: the co-responder team goes
    team_call = SimulatedEvent(yesterday, team_call.key, json.dumps(body).encode(), team_call.type)
    calls_topic = env.topic(topics.CALLS)
    await publish_events(env.settings.kafka_bootstrap, calls_topic,
                         [_received("stl-911:prom-yesterday-phone", yesterday), team_call])
    await wait_until(lambda: _feed(prometheus, "first"), 60)
    late = _event("unit.arrived", "stl-911:prom-yesterday-team", 1, yesterday + timedelta(minutes=9),
                  sent_at=datetime.now(UTC), unit_id="CRU1", unit_type="co_responder")
    await publish_events(env.settings.kafka_bootstrap, calls_topic, [late])
    await wait_until(lambda: _feed(prometheus, "revised"), 60)


async def _feed(prometheus: PrometheusServer, revision: str) -> bool:
    series = await prometheus.query(f'crisis_outcome_feed_records_total{{revision="{revision}"}}')
    return sum(_values(series)) > 0


async def _run_a_report(env: PipelineEnv, metrics_file: Path, prometheus: PrometheusServer) -> None:
    """`crisis report` as an operator runs it, writing its metrics for the textfile collector."""
    today = datetime.now(UTC).date()
    command = [sys.executable, "-m", "crisis.cli", "report", "--from", str(today - timedelta(days=2)),
               "--to", str(today), "--format", "json", "--operator", "prometheus-test"]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, cwd=REPO_ROOT,
                                     env={**os.environ, **env.settings.as_env(),
                                          "CRISIS_REPORT_METRICS_FILE": str(metrics_file)}, check=False)
    assert result.returncode == 0, result.stderr
    await wait_until(lambda: _reported(prometheus), 30)


async def _reported(prometheus: PrometheusServer) -> bool:
    return bool(await prometheus.query("crisis_report_last_run_timestamp_seconds"))


async def _up(prometheus: PrometheusServer) -> bool:
    """Both jobs scraped at least once, so every counter's first increment is seen by increase()."""
    series = await prometheus.query("up == 1")
    return {s["metric"]["job"] for s in series} == {"crisis-worker", "crisis-ingest", "crisis-report"}


async def _run_load(env: PipelineEnv, prometheus: PrometheusServer) -> None:
    db, bootstrap, calls_topic = env.settings.database_url, env.settings.kafka_bootstrap, env.topic(topics.CALLS)
    await wait_until(lambda: _up(prometheus), 60)
    # Warm-up: once these two are decided the worker consumes, so the live stream's deadlines fire on time.
    now = datetime.now(UTC)
    await publish_events(bootstrap, calls_topic, [_received("stl-911:prom-weapon", now, weapon_present=True),
                                                  _received("stl-911:prom-phone", now)])
    await wait_until(lambda: _stored_at_least(db, "stl-911:prom-", 2), 90)

    city = City(load_policy(), seed=11, settings=CitySettings(calls_per_hour=CALLS_PER_HOUR, late_team_share=0.25),
                run_tag="prom")
    everything = city.events(int(CALLS_PER_HOUR * 24 * SIMULATED_DAYS))
    end = everything[0].occurred_at + timedelta(days=SIMULATED_DAYS)
    start = datetime.now(UTC) + timedelta(seconds=1)
    week = retime([e for e in everything if e.occurred_at < end], start, SPEEDUP)
    await publish_events(bootstrap, calls_topic, [*extras(start), *week], at_event_time=True)

    await wait_until(lambda: _stored_at_least(db, city.call_prefix, len(week)), 90)
    calls = sum(1 for e in week if e.type == "call.received") + 3  # the warm-up calls and the one from the future
    # Prometheus has scraped the last batch: every decision is in its view.
    await wait_until(lambda: _scraped_decisions(prometheus, calls), 30)


async def _stored_at_least(db: str, call_prefix: str, count: int) -> bool:
    return await stored_events(db, call_prefix) >= count


async def _scraped_decisions(prometheus: PrometheusServer, count: int) -> bool:
    return sum(_values(await prometheus.query("sum(crisis_triage_decisions_total)"))) >= count


async def _check_dashboard(prometheus: PrometheusServer) -> list[str]:
    """Every panel's every query: it parses, it returns a series, and (outside MAY_BE_ZERO) a value above 0."""
    failures = []
    titles = set()
    for panel in _query_panels(_dashboard()):
        title = panel["title"]
        titles.add(title)
        for target in panel["targets"]:
            where = f"panel {title!r} query {target['refId']} `{target['expr']}`"
            series = await prometheus.query(target["expr"])
            values = [v for v in _values(series) if math.isfinite(v)]
            if not values:  # nothing, or only NaN (a quantile of no observations): the panel draws nothing
                failures.append(f"{where} shows nothing: {_shows(series)}")
            elif title not in MAY_BE_ZERO and max(values) <= 0:
                failures.append(f"{where} shows only 0 under a load that should move it: {_shows(series)}")
            if title in EACH_ABOVE_ZERO:
                label, wanted = EACH_ABOVE_ZERO[title]
                seen = {s["metric"].get(label) for s in series if math.isfinite(v := float(s["value"][1])) and v > 0}
                if wanted - seen:
                    failures.append(f"{where}: no value above 0 for {label} {sorted(wanted - seen)}: {_shows(series)}")
    assert set(MAY_BE_ZERO) <= titles and set(EACH_ABOVE_ZERO) <= titles, "a panel named here was renamed"
    return failures


async def _check_alerts(prometheus: PrometheusServer) -> list[str]:
    """Every rule of alerts.yml is loaded and evaluates healthy; each expression parses and selects series; the
    alerts this load trips have left the inactive state."""
    names = re.findall(r"^\s+- alert: (\S+)$", (PROMETHEUS_DIR / "alerts.yml").read_text(), re.MULTILINE)
    assert names and set(TRIPPED_BY_THE_LOAD) <= set(names)

    async def evaluated() -> list[dict[str, Any]] | None:
        rules = await prometheus.rules()
        return rules if rules and all(rule["health"] != "unknown" for rule in rules) else None

    rules = await wait_until(evaluated, 30)
    failures = []
    if sorted(rule["name"] for rule in rules) != sorted(names):
        failures.append(f"loaded rules {sorted(r['name'] for r in rules)} are not alerts.yml's {sorted(names)}")
    for rule in rules:
        where = f"alert {rule['name']} `{rule['query']}`"
        if rule["health"] != "ok":
            failures.append(f"{where} is {rule['health']}: {rule.get('lastError')}")
        series = await prometheus.query(rule["query"])
        if rule["name"] in TRIPPED_BY_THE_LOAD and (not series or rule["state"] == "inactive"):
            failures.append(f"{where} is {rule['state']} under a load that trips it: {_shows(series)}")
        for name, matchers in SELECTOR.findall(rule["query"]):
            if not await prometheus.query(name + matchers):
                failures.append(f"{where}: `{name}{matchers}` selects no series")
    return failures
