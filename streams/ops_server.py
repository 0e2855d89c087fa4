"""The worker's operations endpoints on one port (``CRISIS_METRICS_PORT``), served in its event loop.

- ``/metrics``: Prometheus metrics;
- ``/healthz``: the process is alive and its event loop answers (a loop blocked by a long batch or a
  bug does not answer: the liveness probe fails);
- ``/readyz``: 200 only when Postgres and Kafka are reachable and the calls agent is consuming; 503
  otherwise, with each check's result as JSON (what to look at first).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# Each check's result: "ok", or what is wrong.
Readiness = Callable[[], Awaitable[dict[str, str]]]


class OpsServer:
    """An aiohttp server for the three endpoints; ``readiness`` runs the checks on each ``/readyz``."""

    def __init__(self, port: int, registry: CollectorRegistry, readiness: Readiness) -> None:
        self.port = port
        self.registry = registry
        self.readiness = readiness
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "0.0.0.0", self.port).start()
        log.info("metrics, /healthz and /readyz on :%d", self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = await self.readiness()
        ready = all(result == "ok" for result in checks.values())
        return web.Response(text=json.dumps({"ready": ready, "checks": checks}), status=200 if ready else 503,
                            content_type="application/json")
