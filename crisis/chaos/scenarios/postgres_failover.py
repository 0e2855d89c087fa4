"""Postgres high availability: a primary with a synchronous streaming standby; the primary crashes
(``-m immediate``), the standby is promoted, and the worker, whose ``DATABASE_URL`` names both hosts
with ``target_session_attrs=read-write``, finds the new primary by itself. The crashed server is then
rebuilt as the new standby (``pg_basebackup``), so the next failover goes the other way.

Synchronous replication is what makes a failover lose nothing: a batch's commit returns only once
the standby has it, and the worker acknowledges the batch to Kafka only after the commit."""

from __future__ import annotations

import asyncio
import dataclasses

from crisis.chaos.environment import ChaosServices
from crisis.chaos.run import ChaosRun, RunOutcome
from crisis.chaos.scenarios import Size, fault_moments
from crisis.pg_server import PostgresServer, multi_host_url

NAME = "postgres_failover"
DESCRIPTION = "Postgres primary crashed, synchronous standby promoted; worker reconnects via a multi-host URL"


def _pair(password: str) -> tuple[PostgresServer, PostgresServer]:
    primary = PostgresServer(password).init().start()
    standby = primary.replica().start()
    primary.require_synchronous_standby()
    return primary, standby


async def run(services: ChaosServices, size: Size, seed: int) -> RunOutcome:
    kafka = await asyncio.to_thread(services.kafka)
    primary, standby = await asyncio.to_thread(_pair, services.postgres_password)
    servers = [primary, standby]  # the URL keeps naming both ports, whichever is primary
    current = {"primary": primary, "standby": standby}
    deployment = dataclasses.replace(
        services.deployment(kafka, primary),
        admin_url=lambda database: current["primary"].url(database),
        worker_url=lambda database, user, password: multi_host_url(servers, database, user, password),
    )
    faults = max(1, min(size.faults, 2))
    chaos = ChaosRun(NAME, deployment, size.events, seed, size.pace(faults, 15.0), size.timeout_seconds)
    try:
        await chaos.prepare()
        for share in fault_moments(seed, faults):
            await chaos.reached(share)
            old, new = current["primary"], current["standby"]
            fault = chaos.begin_fault(f"primary :{old.port} crashed, standby :{new.port} promoted")
            await asyncio.to_thread(old.stop, "immediate")
            await asyncio.to_thread(new.promote)
            current["primary"] = new  # the suite's own checks follow the primary too
            await chaos.end_fault(fault)
            await chaos.wait_recovered(fault)
            # The crashed server comes back as the new standby, on its old port (the URL names it).
            await asyncio.to_thread(old.destroy)
            rebuilt = await asyncio.to_thread(new.replica, old.port)
            await asyncio.to_thread(rebuilt.start)
            await asyncio.to_thread(new.require_synchronous_standby)
            servers[servers.index(old)] = rebuilt
            current["standby"] = rebuilt
        return await chaos.finish()
    finally:
        await chaos.close()
        for server in servers:
            await asyncio.to_thread(server.destroy)
