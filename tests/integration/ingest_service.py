"""The ingest service in the test's own event loop, on a free port, publishing to the real broker."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientSession, web
from prometheus_client import CollectorRegistry

from crisis.ingest.app import create_app
from crisis.ingest.auth import hash_token, load_tokens, new_token
from crisis.ingest.config import IngestSettings
from crisis.ingest.kafka import KafkaGate
from crisis.services import free_port
from streams import topics
from streams.config import Settings
from streams.metrics import IngestMetrics
from tests.conftest import wait_until


@dataclass
class IngestService:
    url: str
    tokens: dict[str, str]  # center id -> token
    gate: KafkaGate
    session: ClientSession

    async def post(self, path: str, body: bytes | dict[str, Any], center: str,
                   content_type: str = "application/json") -> tuple[int, dict[str, str], dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {self.tokens[center]}"}
        async with self.session.post(self.url + path, data=data, headers=headers) as response:
            return response.status, dict(response.headers), await response.json()

    async def ready(self) -> bool:
        async with self.session.get(self.url + "/readyz") as response:
            return response.status == 200


@contextlib.asynccontextmanager
async def running_ingest(settings: Settings, centers: tuple[str, ...], *,
                         publish_timeout_seconds: float = 5.0, wait_ready: bool = True) -> AsyncIterator[IngestService]:
    tokens = {center: new_token() for center in centers}
    store = load_tokens(None, ",".join(f"{center}={hash_token(token)}" for center, token in tokens.items()))
    ingest = IngestSettings(publish_timeout_seconds=publish_timeout_seconds,
                            health_interval_seconds=0.5, retry_after_seconds=2)
    metrics = IngestMetrics(CollectorRegistry())
    gate = KafkaGate(settings, ingest, settings.topic(topics.CALLS), metrics)
    runner = web.AppRunner(create_app(ingest, store, gate, metrics))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await gate.start()
    session = ClientSession()
    service = IngestService(f"http://127.0.0.1:{port}", tokens, gate, session)
    try:
        if wait_ready:
            await wait_until(service.ready, 60)
        yield service
    finally:
        await session.close()
        await gate.stop()
        await runner.cleanup()
