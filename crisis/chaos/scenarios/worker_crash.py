"""Worker crashes: the worker SIGKILLed at random moments and restarted; then a second worker joins
and one of the two is killed (the survivor takes over its partitions after the session timeout)."""

from __future__ import annotations

import asyncio
import random
import time

from crisis.chaos.environment import ChaosServices
from crisis.chaos.kafka_admin import group_members
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import Size, fault_moments

NAME = "worker_crash"
DESCRIPTION = "worker SIGKILLed mid-batch and restarted; a second worker joins, one of the two is killed"


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    postgres = await asyncio.to_thread(services.postgres)
    kills = max(1, size.faults - 1)
    chaos = ChaosRun(NAME, services.deployment(kafka, postgres), size.events, seed, size.pace(kills + 1, 15.0),
                     size.timeout_seconds)
    rng = random.Random(f"{NAME}-{seed}")
    try:
        await chaos.prepare()
        # size.faults kills in all: the last two moments are for a second worker joining, then one of
        # the two being killed.
        moments = fault_moments(seed, kills + 2, high=0.75)
        for share in moments[:-2]:
            await chaos.reached(share)
            victim = chaos.alive_workers()[0]
            chaos.scrape_metrics()
            fault = chaos.begin_fault("worker SIGKILL, restarted")
            chaos.kill_worker(victim)
            chaos.start_worker()
            await chaos.end_fault(fault)
        # A second worker joins: once the group has both (and the next moment came), kill one of them.
        await chaos.reached(moments[-2])
        chaos.start_worker()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state, members = await group_members(kafka.bootstrap, services.suite_options(), chaos.settings.app_id)
            if state == "Stable" and members >= 2:
                break
            await asyncio.sleep(0.5)
        await chaos.reached(moments[-1])
        chaos.scrape_metrics()
        fault = chaos.begin_fault("one of two workers SIGKILLed")
        chaos.kill_worker(rng.choice(chaos.alive_workers()))
        await chaos.end_fault(fault)
    except BaseException:
        await chaos.close()
        raise
    return await chaos.finish()
