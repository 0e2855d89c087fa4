"""The README's example report: a simulated month through the batch pipeline into PostgreSQL, rendered.

``python -m crisis.report_example --out docs/report-example.html --png docs/report-example.png`` starts
an embedded PostgreSQL, stores a seeded month of calls (with the simulated follow-up team's attempts and
completions) through ``CallPipeline`` in process (no broker: the figures do not
depend on one), renders the HTML report and screenshots it with headless Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from crisis.simulate import City, CitySettings, SimulatedEvent
from domain.policy import Policy, load_policy


def month_of_calls(policy: Policy, first: date, last: date, calls: int, seed: int) -> list[SimulatedEvent]:
    """``calls`` simulated calls spread over the local days ``first`` to ``last``."""
    start = datetime.combine(first, time(0, 30), policy.zone)
    hours = (datetime.combine(last, time(23), policy.zone) - start).total_seconds() / 3600
    city = City(policy, seed=seed, settings=CitySettings(calls_per_hour=calls / hours * 0.97, override_away_share=0.02),
                start_at=start.astimezone(UTC), run_tag="example")
    return city.events(calls)


async def _store(database_url: str, policy: Policy, events: list[SimulatedEvent]) -> None:
    from prometheus_client import CollectorRegistry

    from agents.decoding import InboundRecord
    from agents.pipeline import CallPipeline
    from sinks.postgres import PostgresStore
    from streams import topics
    from streams.config import Settings
    from streams.metrics import PipelineMetrics
    from streams.publisher import ListPublisher

    store = await PostgresStore.connect(database_url, zone=policy.zone)
    pipeline = CallPipeline(Settings(timer_clock="event", timer_lateness_seconds=0), policy, store, ListPublisher(),
                            PipelineMetrics(CollectorRegistry()), clock=lambda: datetime.now(UTC))
    try:
        for offset in range(0, len(events), 1000):
            chunk = events[offset:offset + 1000]
            await pipeline.handle([InboundRecord(topics.CALLS, 0, offset + i, e.key.encode(), e.value)
                                   for i, e in enumerate(chunk)])
    finally:
        await store.close()


def main() -> None:
    from crisis.report import ReportRequest, run_report
    from crisis.services import EmbeddedPostgres, create_database
    from sinks.migrate import migrate

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--calls", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    policy = load_policy()
    today = datetime.now(UTC).date()
    last = today.replace(day=1) - timedelta(days=40)
    first, last = last.replace(day=1), (last.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    events = month_of_calls(policy, first, last, args.calls, args.seed)
    with EmbeddedPostgres() as server:
        asyncio.run(create_database(server.url(), "example"))
        url = server.url("example")
        asyncio.run(migrate(url))
        asyncio.run(_store(url, policy, events))
        _, text, seconds = run_report(url, ReportRequest(first, last, "week", "html", args.out, "example", 10),
                                      policy.zone, "example")
    args.out.write_text(text, encoding="utf-8")
    print(f"{len(events)} events, report in {seconds:.2f} s: {args.out}")
    if args.png:
        browser = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1100,2200", f"--screenshot={args.png.resolve()}", args.out.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
        print(f"screenshot: {args.png}")


if __name__ == "__main__":
    main()
