"""Broker crashes: Apache Kafka hard-killed (SIGKILL) and restarted on the same data directory, mid-run."""

from __future__ import annotations

import asyncio

from crisis.chaos.environment import ChaosServices
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import Size, fault_moments

NAME = "broker_restart"
DESCRIPTION = "Apache Kafka SIGKILLed and restarted (same data directory) mid-run"


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    postgres = await asyncio.to_thread(services.postgres)
    node = kafka.node(1)
    chaos = ChaosRun(NAME, services.deployment(kafka, postgres), size.events, seed, size.pace(size.faults, 20.0),
                     size.timeout_seconds)
    try:
        await chaos.prepare()
        for share in fault_moments(seed, size.faults):
            await chaos.reached(share)
            fault = chaos.begin_fault("broker SIGKILL, restarted")
            node.kill()
            await asyncio.to_thread(node.start)  # the JVM's start-up is the outage
            await chaos.end_fault(fault)
            await chaos.wait_recovered(fault)
    except BaseException:
        await chaos.close()
        raise
    finally:
        if not node.alive():
            await asyncio.to_thread(node.start)  # the next scenario needs the broker
    return await chaos.finish()
