"""The fault-injection suite, shortened (``crisis.chaos.scenarios.SHORT``: 4,000 events, 2 faults, 5 s
outages), on real Apache Kafka (SASL/SCRAM) and PostgreSQL (passwords, the worker as a ``crisis_worker``
login).

Each scenario checks its run record by record against the ground truth (``crisis.chaos.checker``):
nothing lost, nothing stored twice, every fault recovered from, no personal data in any output.
``crisis chaos`` runs the same scenarios at full size (100,000 events, 6 faults, 30 s outages) plus
the three-broker cluster, and writes the README's Reliability table. Recovery times are reported
(in the test log), never asserted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crisis.chaos.environment import ChaosServices
from crisis.chaos.scenarios import SHORT
from crisis.chaos.suite import scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# Every scenario but the three-broker cluster: its three JVMs and kill-restart-resync cycles, beside the
# other test process and its broker on two cores, are for `crisis chaos` (make chaos).
IN_MAKE_TEST = ("worker_crash", "broker_restart", "kafka_partition", "postgres_partition", "postgres_crash",
                "postgres_failover", "hostile_input", "personal_data")


@pytest.fixture(scope="module")
def services() -> Iterator[ChaosServices]:
    with ChaosServices() as started:
        yield started


@pytest.mark.parametrize("name", IN_MAKE_TEST)
async def test_scenario_loses_nothing_duplicates_nothing_leaks_nothing(services: ChaosServices, name: str) -> None:
    outcome = await scenario(name).run(services, SHORT, 7)
    summary = outcome.summary()
    assert outcome.complete, f"the run did not finish: {summary}"
    assert summary["lost"] == summary["unexpected"] == summary["mismatched"] == 0, summary["problems"]
    assert summary["duplicated"] == 0, summary["problems"]
    assert summary["personal_data_hits"] == 0, summary["problems"]
    assert summary["unrecovered_faults"] == 0, summary["fault_log"]
    assert all(check.ok for check in outcome.verdict.topics.values()), summary["problems"]
    assert summary["dead_lettered"] == summary["dead_letters_expected"] > 0
    assert outcome.passed, summary
    print(summary)  # the recovery seconds, for whoever reads the test log
