"""The `crisis` command: run, explain and try out the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def broker(port: Annotated[int, typer.Option(help="Loopback port to listen on.")] = 9092) -> None:
    """Run the embedded Kafka-compatible broker (tansu, memory only) until Ctrl-C."""
    import signal

    from crisis.services import TansuBroker

    # SIGTERM (e.g. from a process manager) must stop tansu too, through the context manager.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with TansuBroker(port) as running:
        typer.echo(f"tansu listening on {running.bootstrap} (memory only; Ctrl-C to stop)")
        try:
            while running.process is not None and running.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


@app.command()
def migrate() -> None:
    """Apply the Postgres migrations to $DATABASE_URL (safe to run twice, or from two workers at once)."""
    from sinks.migrate import migrate as run_migrations
    from streams.config import Settings

    applied = asyncio.run(run_migrations(Settings.from_env().database_url))
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@app.command()
def worker() -> None:
    """Run a pipeline worker on $KAFKA_BOOTSTRAP and $DATABASE_URL until SIGTERM."""
    import asyncpg

    from domain.policy import PolicyError, load_policy
    from sinks.migrate import MigrationPrivilegeError
    from sinks.migrate import migrate as run_migrations
    from streams.config import Settings
    from streams.security import KafkaSecurityError, check

    settings = Settings.from_env()
    if not settings.pseudonym_key:
        _fail("CRISIS_PSEUDONYM_KEY is not set: without a secret key, person references on partner topics "
              "could be reversed to phone numbers (generate one: openssl rand -hex 32)")
    try:
        check(settings)  # before importing the Faust app, which connects with these settings
    except KafkaSecurityError as exc:
        _fail(str(exc))
    try:
        policy = load_policy(settings.policy_path)
        asyncio.run(run_migrations(settings.database_url))
    except PolicyError as exc:
        _fail(str(exc))
    except (OSError, asyncpg.PostgresError, MigrationPrivilegeError) as exc:
        _fail(f"cannot migrate the database at $DATABASE_URL: {exc}")
    sys.argv = [sys.argv[0], "worker"]  # Faust's worker parses argv itself
    from agents.worker import run_worker  # builds the Faust app: only after the settings were checked

    run_worker(policy)


@app.command()
def triage(
    policy: Annotated[Path | None, typer.Option(
        help="Try this policy: print how many calls would change route.")] = None,
    baseline: Annotated[Path | None, typer.Option(
        help="Policy to compare against (default: $CRISIS_POLICY or the shipped one).")] = None,
    input_file: Annotated[Path | None, typer.Option("--input", help="JSON lines file (default: stdin).")] = None,
    explain_changes: Annotated[bool, typer.Option(
        "--show-changes", help="With --policy: list each changed call.")] = False,
    unmapped_codes: Annotated[Path | None, typer.Option(
        "--unmapped-codes", help="Write the codes no mapping recognised to this CSV file "
        "(center_id, field, code, calls), under --policy when given.")] = None,
) -> None:
    """Decide routes for call.received JSON lines, without any broker.

    Without --policy: one decision per line (route, reasons, policy_version, call_id).
    With --policy FILE: a what-if report of how many calls would change route, by old and new route
    (nature-code mappings included: a candidate that maps more codes shows which calls it moves).
    With --unmapped-codes FILE: the nature codes, MPDS determinants and APCO types the policy's
    mapping for each center does not recognise, most frequent first, for the center to map.
    """
    from domain.policy import PolicyError, load_policy
    from domain.triage import triage as decide_route
    from schemas.calls import CallReceived, decode_call_event

    try:
        current = load_policy(baseline)
        candidate = load_policy(policy) if policy else None
    except PolicyError as exc:
        _fail(str(exc))
    lines = (input_file.open(encoding="utf-8") if input_file else sys.stdin)
    invalid = 0
    changes: Counter[tuple[str, str]] = Counter()
    unmapped: Counter[tuple[str, str, str]] = Counter()
    seen = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = decode_call_event(line)
        except ValidationError as exc:
            invalid += 1
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(event)'}: {e['msg']}" for e in exc.errors())
            typer.echo(f"line {number}: invalid event: {problems}", err=True)
            continue
        if not isinstance(event, CallReceived):
            # In a what-if or an unmapped-codes report over a CAD export, other lifecycle events are expected.
            if candidate is None and unmapped_codes is None:
                invalid += 1
                typer.echo(f"line {number}: {event.type} is not a call.received event", err=True)
            continue
        seen += 1
        decision = decide_route(event, current)
        if candidate is None:
            unmapped.update((event.center_id, ref.field, ref.code) for ref in decision.unmapped_codes)
            typer.echo(json.dumps({
                "call_id": event.call_id, "route": decision.route.value, "reasons": list(decision.reasons),
                "second_response_requested": decision.second_response_requested,
                "policy_name": current.name, "policy_version": current.version,
            }))
            continue
        proposed = decide_route(event, candidate)
        unmapped.update((event.center_id, ref.field, ref.code) for ref in proposed.unmapped_codes)
        changes[(decision.route.value, proposed.route.value)] += 1
        if explain_changes and proposed.route != decision.route:
            typer.echo(json.dumps({"call_id": event.call_id, "from": decision.route.value,
                                   "to": proposed.route.value, "reasons": list(proposed.reasons)}))
    if candidate is not None:
        changed = sum(n for (old, new), n in changes.items() if old != new)
        typer.echo(json.dumps({
            "calls": seen,
            "changed": changed,
            "baseline": f"{current.name} {current.version}",
            "candidate": f"{candidate.name} {candidate.version}",
            "by_route": [{"from": old, "to": new, "calls": n} for (old, new), n in sorted(changes.items())],
        }, indent=2))
    if unmapped_codes is not None:
        _write_unmapped_codes(unmapped_codes, unmapped)
    if invalid:
        typer.echo(f"{invalid} invalid line(s)", err=True)
        raise typer.Exit(1)


def _write_unmapped_codes(path: Path, unmapped: Counter[tuple[str, str, str]]) -> None:
    """The unmapped-codes report: one CSV row per center and code, most calls first."""
    import csv

    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["center_id", "field", "code", "calls"])
        for (center_id, field, code), calls in sorted(unmapped.items(), key=lambda item: (-item[1], item[0])):
            writer.writerow([center_id, field, code, calls])
    typer.echo(f"{len(unmapped)} distinct unmapped code(s), seen {sum(unmapped.values())} time(s): written to {path}",
               err=True)


@app.command()
def simulate(
    calls: Annotated[int, typer.Option(help="Number of calls to generate.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same stream.")] = 7,
    out: Annotated[Path | None, typer.Option(help="Write JSON lines here instead of publishing.")] = None,
    rate: Annotated[float | None, typer.Option(help="Events per second when publishing. With --live: the city's day "
                                                    "compressed to this average rate, events stamped with the wall "
                                                    "clock.")] = None,
    as_fast_as_possible: Annotated[bool, typer.Option("--as-fast-as-possible")] = False,
    live: Annotated[bool, typer.Option(help="Start the stream now, stamp each event with the wall clock and send it "
                                            "when its time comes (real time, or compressed by --rate).")] = False,
    malformed: Annotated[int, typer.Option(help="Also send this many malformed records.")] = 0,
) -> None:
    """Generate a synthetic city's call events; publish them to $KAFKA_BOOTSTRAP or write a file."""
    from crisis.publish import retime
    from crisis.simulate import City, malformed_events
    from domain.policy import load_policy
    from streams import topics
    from streams.config import Settings

    events = City(load_policy(), seed=seed).events(calls)
    if live:
        events = retime(events, speedup=live_speedup(events, rate))
        rate = None  # the speed-up paces the stream now: each event goes out at its (wall-clock) time
    events += list(malformed_events(malformed, seed))
    if out:
        with out.open("wb") as handle:
            for event in events:
                handle.write(event.value + b"\n")
        typer.echo(f"wrote {len(events)} events for {calls} calls to {out}", err=True)
        return
    settings = Settings.from_env()
    pace = None if as_fast_as_possible else rate
    result = _publish_with_progress(settings, events, pace, at_event_time=live and not as_fast_as_possible)
    typer.echo(json.dumps({"events_published": result.events, "elapsed_seconds": round(result.elapsed_seconds, 2),
                           "topic": settings.topic(topics.CALLS)}))


def live_speedup(events: list, rate: float | None) -> float:  # type: ignore[type-arg]
    """How much to compress the simulated city's time so its events average ``rate`` per second (1: real time).

    The city keeps its rhythm (busy afternoons, quiet nights), only faster; each event is stamped with
    the wall-clock moment it is sent, so a live worker sees events from now, never from the future.
    """
    if rate is None or len(events) < 2:
        return 1.0
    span = (events[-1].occurred_at - events[0].occurred_at).total_seconds()
    natural_rate = len(events) / span if span > 0 else rate
    return max(1.0, rate / natural_rate)


def _publish_with_progress(settings: object, events: list, pace: float | None,  # type: ignore[no-untyped-def]
                           at_event_time: bool = False):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from crisis.publish import publish_events
    from streams import topics
    from streams.security import kafka_client_options
    from streams.topics import ensure_topics

    asyncio.run(ensure_topics(settings))  # type: ignore[arg-type]
    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task("publishing", total=len(events))
        return asyncio.run(publish_events(
            settings.kafka_bootstrap, settings.topic(topics.CALLS), events, pace,  # type: ignore[attr-defined]
            on_progress=lambda n: bar.update(task, completed=n), at_event_time=at_event_time,
            client_options=kafka_client_options(settings),  # type: ignore[arg-type]
            idempotent=settings.kafka_idempotent_producer))  # type: ignore[attr-defined]


@app.command()
def demo(
    calls: Annotated[int, typer.Option(help="Number of simulated calls.")] = 1000,
    malformed: Annotated[int, typer.Option(help="Malformed records to show the dead-letter path.")] = 10,
    seed: Annotated[int, typer.Option()] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the pipeline to finish.")] = 180,
) -> None:
    """Run the whole pipeline end to end on an embedded broker and Postgres, then print a summary."""
    from crisis.demo import run_demo

    summary = run_demo(calls, malformed, seed, timeout, progress=not as_json and sys.stderr.isatty())
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="crisis-pipeline demo", show_header=False)
        for key, value in summary.items():
            table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
        Console().print(table)
    if not summary["complete"]:
        raise typer.Exit(1)


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="JSON lines of call events, e.g. from `crisis simulate --out`.")],
    rate: Annotated[float | None, typer.Option(help="Events per second (default: as fast as possible).")] = None,
    strict: Annotated[bool, typer.Option(help="Check the whole file first; publish nothing if any line is bad.")]
    = False,
) -> None:
    """Publish a recorded file of call events to $KAFKA_BOOTSTRAP in file order, keyed by call_id.

    A bad line (not JSON, or without a string call_id) is reported on stderr with its line number.
    By default it is still published, keyed by null, so the pipeline dead-letters it with a reason;
    with --strict nothing is published and the exit code is 1. Prints a one-line JSON summary.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from crisis.replay import ParsedLine, ReplaySummary, bad_lines, replay_file
    from streams import topics
    from streams.config import Settings
    from streams.security import kafka_client_options
    from streams.topics import ensure_topics

    if rate is not None and rate <= 0:
        _fail("--rate must be a positive number of events per second")

    def report(line: ParsedLine, console: object = None) -> None:
        message = f"line {line.number}: {line.problem}"
        if console is not None:
            console.print(message, markup=False, highlight=False)  # type: ignore[attr-defined]
        else:
            typer.echo(message, err=True)

    if strict:
        found = 0
        for line in bad_lines(file):
            found += 1
            report(line)
        if found:
            typer.echo(f"{found} bad line(s): nothing published (--strict)", err=True)
            typer.echo(json.dumps(ReplaySummary(0, found, 0.0).as_dict()))
            raise typer.Exit(1)

    settings = Settings.from_env()
    topic = settings.topic(topics.CALLS)
    asyncio.run(ensure_topics(settings))
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task("replaying", total=file.stat().st_size)
        console = bar.console if sys.stderr.isatty() else None
        summary = asyncio.run(replay_file(
            file, settings.kafka_bootstrap, topic, rate,
            on_bad=lambda line: report(line, console),
            on_progress=lambda sent, read: bar.update(task, completed=read, description=f"{sent:,} events"),
            client_options=kafka_client_options(settings), idempotent=settings.kafka_idempotent_producer,
        ))
    if summary.bad_lines:
        typer.echo(f"{summary.bad_lines} bad line(s) published keyed by null: the pipeline dead-letters them",
                   err=True)
    typer.echo(json.dumps({**summary.as_dict(), "topic": topic}))


@app.command()
def ingest() -> None:
    """Run the HTTP front door for CADs: POST /v1/events (our events, NDJSON batches) and /v1/eido (NENA EIDO).

    Publishes to $KAFKA_BOOTSTRAP with acks=all; centers authenticate with the tokens of
    $CRISIS_INGEST_TOKENS_FILE / $CRISIS_INGEST_TOKENS. Stops cleanly on SIGTERM.
    """
    from crisis.ingest.app import run_ingest
    from crisis.ingest.auth import TokenConfigError

    try:
        run_ingest()
    except (TokenConfigError, ValueError, OSError) as exc:
        _fail(str(exc))


@app.command("ingest-token")
def ingest_token(
    center_id: Annotated[str, typer.Argument(help="The dispatch center the token is for (e.g. stl-911).")],
) -> None:
    """Make a new token for a center: give the token to the center, put the hash line in the token file."""
    from crisis.ingest.auth import TokenConfigError, hash_token, load_tokens, new_token

    token = new_token()
    digest = hash_token(token)
    try:
        load_tokens(None, f"{center_id}={digest}")  # the same checks the service applies
    except TokenConfigError as exc:
        _fail(str(exc))
    typer.echo(f"token (give it to the center once; it is not stored anywhere): {token}", err=True)
    typer.echo(f"token file line ([centers] in $CRISIS_INGEST_TOKENS_FILE):  \"{center_id}\" = \"{digest}\"",
               err=True)
    typer.echo(f"or environment:  CRISIS_INGEST_TOKENS={center_id}={digest}", err=True)
    typer.echo(json.dumps({"center_id": center_id, "token": token, "hash": digest}))


@app.command("import-cad")
def import_cad(
    export: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                           help="The CAD's calls-for-service export (CSV).")],
    mapping: Annotated[Path, typer.Option(help="Mapping file of the export's format "
                                               "(deploy/cad-mappings/*.toml).")],
    out: Annotated[Path | None, typer.Option(help="Write the events here (JSON lines) instead of publishing.")]
    = None,
    publish: Annotated[bool, typer.Option("--publish", help="Publish the events to $KAFKA_BOOTSTRAP.")] = False,
    strict: Annotated[bool, typer.Option(help="Write or publish nothing if any row cannot be used.")] = False,
) -> None:
    """Turn a CAD export into our lifecycle events (call.received, unit.dispatched, unit.arrived, call.closed).

    Call ids are <center_id>:<incident number> and event ids come from the export's own identifiers,
    so importing the same file twice, or an overlapping later export, stores nothing twice. Rows that
    cannot be used are reported on stderr by line number with the reason; a JSON summary (calls,
    dispatches, arrivals, closes) goes to stdout.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from crisis.import_cad import CadImportError, convert_export, load_mapping, outgoing, write_events

    if (out is None) == (not publish):
        _fail("give exactly one of --out FILE or --publish")
    try:
        chosen = load_mapping(mapping)
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True) as bar:
            task = bar.add_task("reading", total=export.stat().st_size)
            result = convert_export(export, chosen, on_progress=lambda read: bar.update(task, completed=read))
    except CadImportError as exc:
        _fail(str(exc))
    for problem in result.problems:
        typer.echo(f"line {problem.line}: {problem.message}", err=True)
    summary: dict[str, object] = {**result.summary.as_dict(), "center_id": chosen.center_id,
                                  "events": len(result.events)}
    if strict and result.problems:
        typer.echo(f"{len(result.problems)} problem(s): nothing written or published (--strict)", err=True)
        typer.echo(json.dumps({**summary, "events": 0}))
        raise typer.Exit(1)
    if out is not None:
        write_events(result.events, out)
        summary["out"] = str(out)
    else:
        from streams import topics
        from streams.config import Settings

        settings = Settings.from_env()
        published = _publish_with_progress(settings, outgoing(result.events), None)
        summary["published"] = published.events
        summary["topic"] = settings.topic(topics.CALLS)
    typer.echo(json.dumps(summary))


class KafkaKind(StrEnum):
    TANSU = "tansu"
    APACHE = "apache"


@app.command()
def bench(
    calls: Annotated[int, typer.Option(min=2, help="call.received events for the throughput steps (1-3, 6).")]
    = 50_000,
    kafka: Annotated[KafkaKind, typer.Option(help="Broker to start when $KAFKA_BOOTSTRAP is not set.")]
    = KafkaKind.TANSU,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    latency_seconds: Annotated[float, typer.Option(min=0.1, help="Seconds of offered load for the latency step.")]
    = 10.0,
    latency_rate: Annotated[float, typer.Option(min=1, help="Calls per second offered in the latency step.")]
    = 500.0,
    timers: Annotated[int, typer.Option(min=1, help="SLA timers for the timer-lag step.")] = 100_000,
    followups: Annotated[int, typer.Option(min=0, help="Open follow-ups for the timer-lag step.")] = 100_000,
    timer_seconds: Annotated[float, typer.Option(min=0.5, help="Seconds over which the timers fall due.")] = 40.0,
    replay_events: Annotated[int, typer.Option(min=0, help="Also replay a recorded file of this many events "
                                                           "(every type) through a fresh worker; 0 skips it.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Also measure the pipeline with 1..N workers sharing the "
                                                     "partitions (events/s for each).")] = 1,
) -> None:
    """Measure the pipeline against raw aiokafka and a do-nothing Faust agent, plus latency, timer lag,
    sink speed and worker memory, in one run on one broker and one fresh database.

    Starts tansu (or Apache Kafka) and an embedded PostgreSQL unless $KAFKA_BOOTSTRAP / $DATABASE_URL
    are set (on $DATABASE_URL's server a fresh database is created and dropped). Progress on stderr.
    """
    from crisis.bench import BenchOptions, run_bench
    from crisis.services import ServiceError

    try:
        summary = run_bench(BenchOptions(calls=calls, kafka=kafka.value, latency_seconds=latency_seconds,
                                         latency_rate=latency_rate, timers=timers, followups=followups,
                                         timer_seconds=timer_seconds,
                                         replay_events=replay_events, workers=workers))
    except (ServiceError, OSError) as exc:  # everything it started is stopped by now
        _fail(f"bench failed: {exc}")
    if as_json:
        typer.echo(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="crisis-pipeline bench", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    Console().print(table)


@app.command("bench-ingest")
def bench_ingest(
    kafka: Annotated[KafkaKind, typer.Option(help="Broker to start when $KAFKA_BOOTSTRAP is not set.")]
    = KafkaKind.APACHE,
    seconds: Annotated[float, typer.Option(min=0.5, help="Seconds of load per phase.")] = 10.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 16,
    batch: Annotated[int, typer.Option(min=2, help="Events per request in the batch phase.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure `crisis ingest`: requests per second and p50/p99 latency, single events and batches.

    Starts Apache Kafka (or tansu) unless $KAFKA_BOOTSTRAP is set, and the ingest service in its own
    process; the load comes from this process. Latency runs until the 202, so it includes acks=all.
    """
    from crisis.bench_ingest import IngestBenchOptions, run_ingest_bench
    from crisis.services import ServiceError

    try:
        summary = run_ingest_bench(IngestBenchOptions(kafka=kafka.value, seconds=seconds, concurrency=concurrency,
                                                      batch=batch))
    except (ServiceError, OSError) as exc:
        _fail(f"bench-ingest failed: {exc}")
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(json.dumps(summary, indent=2))


class ReportFormat(StrEnum):
    MD = "md"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


class ReportBy(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    DISTRICT = "district"
    CENTER = "center"


@app.command()
def report(
    from_day: Annotated[str, typer.Option("--from", help="First local day (YYYY-MM-DD), in the policy's time zone.")],
    to_day: Annotated[str, typer.Option("--to", help="Last local day (YYYY-MM-DD), included.")],
    by: Annotated[ReportBy, typer.Option(help="Breakdown beside the total.")] = ReportBy.WEEK,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="md, csv, json or html (one self-contained file).")]
    = ReportFormat.MD,
    out: Annotated[Path | None, typer.Option(help="Write the report here instead of stdout.")] = None,
    operator: Annotated[str | None, typer.Option(help="Who runs it, for the audit table (default: "
                                                      "$CRISIS_OPERATOR, else the OS user).")] = None,
) -> None:
    """The outcomes report a program manager reads, from $DATABASE_URL: funnel, response times, outcomes,
    follow-up and repeat contacts, with small cells suppressed. Every run is recorded in report_runs."""
    from datetime import date

    from rich.console import Console

    from crisis.report import ReportRequest, operator_name, run_report
    from domain.policy import PolicyError, load_policy
    from streams.config import Settings

    try:
        start, end = date.fromisoformat(from_day), date.fromisoformat(to_day)
    except ValueError:
        _fail(f"--from and --to must be dates like 2026-11-01, got {from_day!r} and {to_day!r}")
    if end < start:
        _fail("--to is before --from")
    settings = Settings.from_env()
    try:
        policy = load_policy(settings.policy_path)
    except PolicyError as exc:
        _fail(str(exc))
    who, os_user = operator_name(operator)
    request = ReportRequest(start, end, by.value, fmt.value, out, who, settings.suppression_threshold)
    # A spinner naming the stage on a terminal (a month takes seconds, a year longer); nothing when piped.
    status = Console(stderr=True).status("reading") if sys.stderr.isatty() else None
    with status or contextlib.nullcontext():
        built, text, seconds = run_report(settings.database_url, request, policy.zone, os_user,
                                          step=status.update if status is not None else lambda stage: None)
    write_report_metrics(settings.report_metrics_file, fmt.value, seconds, len(built.suppressed))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
    typer.echo(f"report: {built.cells} cells, {len(built.suppressed)} suppressed, {seconds:.2f} s"
               + (f", written to {out}" if out else ""), err=True)


def write_report_metrics(path: str | None, fmt: str, seconds: float, suppressed: int) -> None:
    """A batch job's metrics for node_exporter's textfile collector (``CRISIS_REPORT_METRICS_FILE``)."""
    if not path:
        return
    from prometheus_client import write_to_textfile

    from streams.metrics import ReportMetrics

    metrics = ReportMetrics()
    metrics.observe(fmt, seconds, suppressed)
    write_to_textfile(path, metrics.registry)


@app.command()
def purge(
    days: Annotated[float | None, typer.Option(
        help="Blank caller phone numbers and dispatchers' free text older than this "
             "(default: $CRISIS_PII_RETENTION_DAYS, 90).")] = None,
    dead_letter_days: Annotated[float | None, typer.Option(
        help="Blank dead letters' original bytes older than this (default: $CRISIS_DEAD_LETTER_RETENTION_DAYS, 30).")]
    = None,
) -> None:
    """Blank personal data past its retention in $DATABASE_URL (idempotent: run it daily); prints what it blanked.

    Pseudonyms (person_ref), decisions, outcomes and the override audit's who/when stay. Needs only the
    crisis_retention role's grants.
    """
    from datetime import UTC, datetime

    import asyncpg

    from sinks.retention import purge_personal_data
    from streams.config import Settings

    settings = Settings.from_env()
    phone_days = settings.pii_retention_days if days is None else days
    letter_days = settings.dead_letter_retention_days if dead_letter_days is None else dead_letter_days
    if phone_days < 0 or letter_days < 0:
        _fail("retention days must not be negative")
    try:
        result = asyncio.run(purge_personal_data(settings.database_url, phone_days, letter_days, datetime.now(UTC)))
    except (OSError, asyncpg.PostgresError) as exc:
        _fail(f"purge failed on $DATABASE_URL: {exc}")
    typer.echo(json.dumps({**result.as_dict(), "phone_retention_days": phone_days,
                           "dead_letter_retention_days": letter_days}))


@app.command()
def chaos(
    scenario: Annotated[list[str] | None, typer.Option(
        help="Run only this scenario (repeatable); default: all of them.")] = None,
    short: Annotated[bool, typer.Option(help="The shortened sizes `make test` uses (10,000 events, 2 faults).")]
    = False,
    events: Annotated[int | None, typer.Option(min=1000, help="Input events per run (default 100,000).")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same streams and fault moments.")] = 7,
    readme: Annotated[Path | None, typer.Option(help="Write the results table into this README's "
                                                     "Reliability section.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON lines.")] = False,
) -> None:
    """The fault-injection suite: every scenario on real Apache Kafka and PostgreSQL it starts itself,
    each checked record by record against the ground truth; prints the reliability table.

    Ignores $KAFKA_BOOTSTRAP and $DATABASE_URL: it kills and cuts off the services it runs on.
    Exit code 1 when any scenario lost, duplicated or leaked anything.
    """
    import dataclasses
    import logging
    import signal

    from crisis.chaos.report import write_readme_section
    from crisis.chaos.scenarios import FULL, SHORT
    from crisis.chaos.suite import SCENARIOS, run_suite

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a broker down on purpose is not news
    names = scenario or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        _fail(f"unknown scenario(s) {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    size = SHORT if short else FULL
    if events is not None:
        size = dataclasses.replace(size, events=events)
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM stops like Ctrl-C: every broker, server and worker the suite started is stopped.
    signal.signal(signal.SIGTERM, interrupted)

    def show(summary: dict[str, object]) -> None:
        if as_json:
            typer.echo(json.dumps(summary, default=str))
        else:
            typer.echo(f"{summary['scenario']}: {'passed' if summary.get('passed') else 'FAILED'} "
                       f"{json.dumps({k: v for k, v in summary.items() if k != 'scenario'}, default=str)}", err=True)

    result = asyncio.run(run_suite(names, size, seed, show))
    table = result.table()
    if not as_json:
        typer.echo(table)
    typer.echo(f"personal data in the suite's own report: {result.report_personal_data_hits}", err=True)
    if readme is not None:
        note = (f"`crisis chaos{' --short' if short else ''}` on {time.strftime('%Y-%m-%d')}, "
                f"{os.cpu_count()} cores, seed {seed}; recovery = seconds from the end of a fault (a broker's "
                "restart, a cut restored, a standby promoted; for a killed worker or cluster broker, the kill) "
                "to the first record stored after it.")
        write_readme_section(readme, f"{note}\n\n{table}\n")
    if not result.passed:
        raise typer.Exit(1)


@app.command()
def asyncapi(
    out: Annotated[Path | None, typer.Option(help="Write the document to this file instead of stdout.")] = None,
) -> None:
    """Print the AsyncAPI 3.0.0 document of our Kafka topics (built from the pydantic models).

    docs/asyncapi.json is its committed output: regenerate it with `crisis asyncapi --out docs/asyncapi.json`.
    """
    from schemas.asyncapi import asyncapi_json

    text = asyncapi_json()
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}", err=True)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
