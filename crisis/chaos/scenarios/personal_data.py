"""Personal data: a normal run (calls with phone numbers in several formats, overrides whose free text
names a person, an address and the caller's number), then every output a partner or a report reader
can see is searched for the input's phone numbers (raw and digits only) and the dispatchers' free
text: every byte of every partner topic, every view the ``crisis_reader`` role may read (what
reports are built from; new report views are searched as soon as they are granted), the demo's
summary and ``crisis purge``'s report, the workers' logs and their ``/metrics`` pages. The suite's
own report is searched too (``crisis.chaos.suite``). Zero hits expected."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from crisis.chaos.environment import ChaosServices
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import Size
from sinks.queries import pipeline_counts
from sinks.retention import purge_personal_data
from sinks.verification import readable_views
from streams import topics

NAME = "personal_data"
DESCRIPTION = "partner topics, report views, report outputs, logs and /metrics searched for phones and free text"


async def _report_outputs(run: ChaosRun) -> dict[str, str]:
    assert run.stream is not None
    sources = {f"view {name} (crisis_reader)": json.dumps(rows, default=str)
               for name, rows in (await readable_views(run.admin_url, "crisis_reader")).items()}
    counts = await pipeline_counts(run.admin_url, run.stream.call_prefix, run.topic(topics.CALLS))
    sources["report: crisis demo summary"] = json.dumps(counts, default=str)
    # A purge that blanks nothing yet (a year's retention): its report format is what is searched.
    purged = await purge_personal_data(run.admin_url, 365, 365, datetime.now(UTC))
    sources["report: crisis purge"] = json.dumps(purged.as_dict())
    run.searched = sorted(sources)
    return sources


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    postgres = await asyncio.to_thread(services.postgres)
    events = max(2000, size.events // 2)
    chaos = ChaosRun(NAME, services.deployment(kafka, postgres), events, seed, size.publish_rate,
                     size.timeout_seconds)
    try:
        await chaos.prepare()
        await chaos.reached(0.5)
        chaos.scrape_metrics()  # mid-run, with every label in use
    except BaseException:
        await chaos.close()
        raise
    outcome = await chaos.finish(more_sources=_report_outputs)
    outcome.extra["outputs_searched"] = [*chaos.searched, "partner topics", "worker logs",
                                         "/metrics pages"]
    return outcome
