"""The worker cut off from Postgres by a TCP proxy, then restored: a partition (``blackhole``: queries
hang until the line comes back) and refused connections (``reset``). The worker must retry with
backoff, hold its consumer, and resume by itself."""

from __future__ import annotations

import asyncio

from crisis.chaos.environment import ChaosServices
from crisis.chaos.proxy import CutMode, TcpProxy
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import Size, fault_moments

NAME = "postgres_partition"
DESCRIPTION = "worker cut off from Postgres by a TCP proxy (partition, then refused connections), restored"
MODES: tuple[CutMode, ...] = ("blackhole", "reset")


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    postgres = await asyncio.to_thread(services.postgres)
    proxy = TcpProxy(postgres.port).start()
    deployment = services.deployment(
        kafka, postgres,
        worker_url=lambda database, user, password: postgres.url(database, user, password, port=proxy.port))
    pace = size.pace(len(MODES), size.outage_seconds + 5.0)
    chaos = ChaosRun(NAME, deployment, size.events, seed, pace, size.timeout_seconds)
    try:
        await chaos.prepare()
        for index, share in enumerate(fault_moments(seed, len(MODES))):
            mode = MODES[index % len(MODES)]
            await chaos.reached(share)
            fault = chaos.begin_fault(f"worker cut off from Postgres ({mode}) for {size.outage_seconds:g} s")
            proxy.cut(mode)
            await asyncio.sleep(size.outage_seconds)  # the length of the outage
            proxy.restore()
            await chaos.end_fault(fault)
            await chaos.wait_recovered(fault)
        return await chaos.finish()
    finally:
        await chaos.close()
        proxy.stop()
