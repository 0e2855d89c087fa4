"""The worker cut off from Kafka by a TCP proxy the suite controls (its only way to the broker), then
restored: once as a network partition (``blackhole``: nothing answers), once as a host gone away
(``reset``: every connection refused)."""

from __future__ import annotations

import asyncio

from crisis.chaos.environment import ChaosServices
from crisis.chaos.proxy import CutMode, TcpProxy
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import Size, fault_moments

NAME = "kafka_partition"
DESCRIPTION = "worker cut off from Kafka by a TCP proxy (partition, then refused connections), restored"
MODES: tuple[CutMode, ...] = ("blackhole", "reset")


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    postgres = await asyncio.to_thread(services.postgres)
    node = kafka.node(1)
    assert node.proxied_port is not None and node.proxy_port is not None
    proxy = TcpProxy(node.proxied_port, port=node.proxy_port).start()
    chaos = ChaosRun(NAME, services.deployment(kafka, postgres, worker_bootstrap=kafka.proxied_bootstrap),
                     size.events, seed, size.pace(len(MODES), size.outage_seconds + 8.0), size.timeout_seconds)
    try:
        await chaos.prepare()
        for index, share in enumerate(fault_moments(seed, len(MODES))):
            mode = MODES[index % len(MODES)]
            await chaos.reached(share)
            fault = chaos.begin_fault(f"worker cut off from Kafka ({mode}) for {size.outage_seconds:g} s")
            proxy.cut(mode)
            await asyncio.sleep(size.outage_seconds)  # the length of the outage, not a guess at speed
            proxy.restore()
            await chaos.end_fault(fault)
            await chaos.wait_recovered(fault)
        return await chaos.finish()
    finally:
        await chaos.close()
        proxy.stop()
