"""The worker cut off from Kafka by a TCP proxy the suite controls (its only way to the broker), then
restored: once as a network partition (``blackhole``: nothing answers), once as a host gone away
(``reset``: every connection refused)."""

from __future__ import annotations

import asyncio

from crisis.chaos.environment import ChaosServices
from crisis.chaos.proxy import TcpProxy
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import CUT_MODES, Size, cut_at_moments

NAME = "kafka_partition"
DESCRIPTION = "worker cut off from Kafka by a TCP proxy (partition, then refused connections), restored"


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    postgres = await asyncio.to_thread(services.postgres)
    node = kafka.node(1)
    assert node.proxied_port is not None and node.proxy_port is not None
    proxy = TcpProxy(node.proxied_port, port=node.proxy_port).start()
    chaos = ChaosRun(NAME, services.deployment(kafka, postgres, worker_bootstrap=kafka.proxied_bootstrap),
                     size.events, seed, size.pace(len(CUT_MODES), size.outage_seconds + 8.0), size.timeout_seconds)
    return await cut_at_moments(chaos, proxy, size, seed, "Kafka")
