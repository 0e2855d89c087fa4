"""The worker cut off from Postgres by a TCP proxy, then restored: a partition (``blackhole``: queries
hang until the line comes back) and refused connections (``reset``). The worker must retry with
backoff, hold its consumer, and resume by itself."""

from __future__ import annotations

import asyncio

from crisis.chaos.environment import ChaosServices
from crisis.chaos.proxy import TcpProxy
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import CUT_MODES, Size, cut_at_moments

NAME = "postgres_partition"
DESCRIPTION = "worker cut off from Postgres by a TCP proxy (partition, then refused connections), restored"


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    postgres = await asyncio.to_thread(services.postgres)
    proxy = TcpProxy(postgres.port).start()
    deployment = services.deployment(
        kafka, postgres,
        worker_url=lambda database, user, password: postgres.url(database, user, password, port=proxy.port))
    pace = size.pace(len(CUT_MODES), size.outage_seconds + 5.0)
    chaos = ChaosRun(NAME, deployment, size.events, seed, pace, size.timeout_seconds)
    return await cut_at_moments(chaos, proxy, size, seed, "Postgres")
