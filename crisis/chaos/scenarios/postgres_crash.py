"""Postgres crashes: the server stopped with ``pg_ctl stop -m immediate`` (no shutdown checkpoint),
down for the outage, started again (crash recovery). Reports the seconds from Postgres back to the
first stored batch."""

from __future__ import annotations

import asyncio

from crisis.chaos.environment import ChaosServices
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import Size, fault_moments

NAME = "postgres_crash"
DESCRIPTION = "Postgres stopped with -m immediate (a crash), restarted after the outage"


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    postgres = await asyncio.to_thread(services.postgres)
    faults = max(1, min(size.faults, 2))
    pace = size.pace(faults, size.outage_seconds + 5.0)
    chaos = ChaosRun(NAME, services.deployment(kafka, postgres), size.events, seed, pace, size.timeout_seconds)
    try:
        await chaos.prepare()
        for share in fault_moments(seed, faults):
            await chaos.reached(share)
            fault = chaos.begin_fault(f"Postgres crashed (-m immediate), down {size.outage_seconds:g} s")
            await asyncio.to_thread(postgres.stop, "immediate")
            await asyncio.sleep(size.outage_seconds)  # the length of the outage
            await asyncio.to_thread(postgres.start)
            await chaos.end_fault(fault)
            await chaos.wait_recovered(fault)
    except BaseException:
        await chaos.close()
        raise
    finally:
        if not postgres.running():
            await asyncio.to_thread(postgres.start)
    return await chaos.finish()
