"""``crisis chaos``: every scenario, one after the other, on services started once; the table at the end.

A scenario that raises is reported as an error and the others still run. When all are done the
suite's own report (the table and the JSON) is searched for the personal data every run sent in:
a report is an output too.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from crisis.chaos.environment import ChaosServices
from crisis.chaos.pii_scan import PersonalDataScanner
from crisis.chaos.report import markdown_table
from crisis.chaos.run import RunOutcome
from crisis.chaos.scenarios import Size

log = logging.getLogger(__name__)

# In the order they run: the cheap single-broker ones first, the three-broker cluster last.
SCENARIOS = ("worker_crash", "broker_restart", "kafka_partition", "postgres_partition", "postgres_crash",
             "postgres_failover", "hostile_input", "personal_data", "cluster")


def scenario(name: str) -> ModuleType:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}: one of {', '.join(SCENARIOS)}")
    return importlib.import_module(f"crisis.chaos.scenarios.{name}")


def descriptions() -> dict[str, str]:
    """Scenario name as reported -> what it does."""
    return {scenario(name).NAME: scenario(name).DESCRIPTION for name in SCENARIOS}


@dataclass
class SuiteResult:
    summaries: list[dict[str, Any]]
    report_personal_data_hits: int  # in the table and the JSON the suite itself reports

    @property
    def passed(self) -> bool:
        return all(summary.get("passed") for summary in self.summaries) and not self.report_personal_data_hits

    def table(self) -> str:
        return markdown_table(self.summaries, descriptions())


async def run_suite(names: Sequence[str], size: Size, seed: int,
                    on_result: Callable[[dict[str, Any]], None] = lambda summary: None) -> SuiteResult:
    """Run the scenarios: one summary each (``RunOutcome.summary``, or ``error``), then search the report."""
    summaries: list[dict[str, Any]] = []
    outcomes: list[RunOutcome] = []
    with ChaosServices() as services:
        for name in names:
            module = scenario(name)
            started = time.monotonic()
            try:
                outcome = await module.run(services, size, seed)
                outcomes.append(outcome)
                summary = outcome.summary()
            except Exception as exc:
                log.error("scenario %s failed:\n%s", name, traceback.format_exc())
                summary = {"scenario": module.NAME, "error": f"{type(exc).__name__}: {exc}"[:300], "passed": False,
                           "elapsed_seconds": round(time.monotonic() - started, 1)}
            summaries.append(summary)
            on_result(summary)
    report = markdown_table(summaries, descriptions()) + json.dumps(summaries, default=str)
    hits = scanner_for(outcomes).scan("the suite's report", report)
    return SuiteResult(summaries, len(hits))


def scanner_for(outcomes: Sequence[RunOutcome]) -> PersonalDataScanner:
    """Every phone number and free text the runs sent in."""
    phones = {phone for outcome in outcomes if outcome.stream for phone in outcome.stream.phones}
    texts = [text for outcome in outcomes if outcome.stream for text in outcome.stream.free_texts]
    return PersonalDataScanner(phones, texts)
