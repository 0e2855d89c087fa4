"""A replicated cluster: three KRaft brokers (replication factor 3, ``min.insync.replicas`` 2, producers
with ``acks=all`` and idempotence); the leader of the busiest partitions SIGKILLed mid-run, as Kafka's
own ``StreamsBrokerBounceTest`` does, and restarted once decisions flow again. Reports the seconds
from each kill until records are stored again."""

from __future__ import annotations

import asyncio
import time

from crisis.chaos.environment import ChaosServices
from crisis.chaos.kafka_admin import records_by_leader, under_replicated, wait_for_brokers
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import Size, fault_moments
from streams import topics

NAME = "cluster_leader_kill"
DESCRIPTION = "3-broker cluster (RF 3, min ISR 2): the leader of the busiest partitions SIGKILLed, restarted"


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    cluster = await asyncio.to_thread(services.cluster)
    postgres = await asyncio.to_thread(services.postgres)
    options = services.suite_options()
    await wait_for_brokers(cluster.bootstrap, options, cluster.size)
    chaos = ChaosRun(NAME, services.deployment(cluster, postgres), size.events, seed, size.pace(size.faults, 45.0),
                     size.timeout_seconds)
    ours = [chaos.topic(name) for name in topics.ALL_TOPICS] + ["__consumer_offsets"]
    try:
        await chaos.prepare()
        for share in fault_moments(seed, size.faults):
            await chaos.reached(share)
            # The broker killed last time is back and every partition has all its replicas in sync.
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    if await under_replicated(cluster.bootstrap, options, ours) == 0:
                        break
                except Exception:  # metadata still moving
                    pass
                await asyncio.sleep(1)
            load = await records_by_leader(cluster.bootstrap, options, chaos.topic(topics.CALLS))
            victim = max(sorted(load), key=lambda broker: load[broker])
            fault = chaos.begin_fault(f"broker {victim}, leader of the busiest partitions, SIGKILLed")
            cluster.node(victim).kill()
            await chaos.end_fault(fault)  # recovery counts from the kill: until decisions flow again
            await chaos.wait_recovered(fault)
            await asyncio.to_thread(cluster.node(victim).start)
    except BaseException:
        await chaos.close()
        raise
    finally:
        for node in cluster.nodes:
            if not node.alive():
                await asyncio.to_thread(node.start)
    return await chaos.finish()
