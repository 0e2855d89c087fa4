"""The ingest service's HTTP contract, on an in-memory publisher (Kafka itself: tests/integration/test_ingest.py)."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from crisis.ingest.app import create_app, ssl_context
from crisis.ingest.auth import hash_token, load_tokens, new_token
from crisis.ingest.config import IngestSettings
from crisis.ingest.kafka import PublishUnavailable
from crisis.services import REPO_ROOT, free_port
from streams.metrics import IngestMetrics

STL_TOKEN, HOU_TOKEN = new_token(), new_token()
EIDO = REPO_ROOT / "tests" / "fixtures" / "eido"


class MemoryPublisher:
    """Records what would be published; ``down`` makes it fail like an unreachable Kafka."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.down = False

    @property
    def ready(self) -> bool:
        return not self.down

    async def publish(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        if self.down:
            raise PublishUnavailable("Kafka is not reachable")
        self.records.extend(records)


class Service:
    def __init__(self, client: TestClient, publisher: MemoryPublisher, metrics: IngestMetrics) -> None:
        self.client, self.publisher, self.metrics = client, publisher, metrics

    async def post(self, path: str, body: Any, token: str | None = STL_TOKEN,
                   content_type: str = "application/json", **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
        async with self.client.post(path, data=data, headers=headers, **kwargs) as response:
            return response.status, dict(response.headers), await response.json()

    def requests(self, endpoint: str, status: int, center: str) -> float:
        return self.metrics.registry.get_sample_value(
            "crisis_ingest_requests_total", {"endpoint": endpoint, "status": str(status), "center_id": center}) or 0.0


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    settings = IngestSettings(max_body_bytes=64 * 1024, max_batch_events=100, retry_after_seconds=7)
    tokens = load_tokens(None, f"stl-911={hash_token(STL_TOKEN)},hou-911={hash_token(HOU_TOKEN)}")
    publisher, metrics = MemoryPublisher(), IngestMetrics(CollectorRegistry())
    client = TestClient(TestServer(create_app(settings, tokens, publisher, metrics)))
    await client.start_server()
    yield Service(client, publisher, metrics)
    await client.close()


def stl_call(factory: Any, n: int, **overrides: Any) -> dict[str, Any]:
    return factory(event_id=f"stl-911:{n}:received", call_id=f"stl-911:{n}", **overrides)


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


async def test_one_event_is_accepted_after_publishing_keyed_by_call_id(service: Service, call_received_factory):
    event = stl_call(call_received_factory, 1)
    status, _, body = await service.post("/v1/events", event)

    assert (status, body) == (202, {"accepted": 1, "event_ids": ["stl-911:1:received"]})
    assert service.publisher.records == [(b"stl-911:1", json.dumps(event).encode())]
    assert service.requests("/v1/events", 202, "stl-911") == 1
    assert service.metrics.registry.get_sample_value(
        "crisis_ingest_events_published_total", {"center_id": "stl-911", "type": "call.received"}) == 1


async def test_a_batch_is_accepted_whole(service: Service, call_received_factory):
    lifecycle = {"type": "unit.dispatched", "event_id": "stl-911:2:d", "call_id": "stl-911:2",
                 "occurred_at": "2026-11-02T15:01:00+00:00", "unit_id": "CRT1", "unit_type": "co_responder"}
    status, _, body = await service.post(
        "/v1/events", ndjson(stl_call(call_received_factory, 2), lifecycle) + b"\n\n",
        content_type="application/x-ndjson")

    assert status == 202
    assert body["event_ids"] == ["stl-911:2:received", "stl-911:2:d"]
    assert [key for key, _ in service.publisher.records] == [b"stl-911:2", b"stl-911:2"]


async def test_a_batch_with_bad_lines_lists_every_field_error_and_publishes_nothing(service: Service,
                                                                                   call_received_factory):
    good = stl_call(call_received_factory, 3)
    no_time = stl_call(call_received_factory, 4, occurred_at="2026-11-02T15:00:00")
    bad_phone = stl_call(call_received_factory, 5, caller_phone="+1" * 40, district="")
    status, _, body = await service.post("/v1/events", ndjson(good, no_time, bad_phone) + b"{broken\n",
                                         content_type="application/x-ndjson")

    assert status == 400
    assert "nothing was accepted" in body["message"]
    assert {(e["line"], e["field"]) for e in body["errors"]} == {
        (2, "occurred_at"), (3, "district"), (3, "caller_phone"), (4, "(event)")}
    assert "+1+1" not in json.dumps(body), "input values (personal data) are not echoed"
    assert service.publisher.records == []
    assert service.requests("/v1/events", 400, "stl-911") == 1


@pytest.mark.parametrize("token", [None, "", "cri_not-a-real-token"])
async def test_without_a_valid_token_401(service: Service, call_received_factory, token: str | None):
    status, headers, body = await service.post("/v1/events", stl_call(call_received_factory, 6), token=token)

    assert status == 401 and body["error"] == "unauthenticated"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert service.publisher.records == []
    assert service.requests("/v1/events", 401, "unauthenticated") == 1


async def test_another_centers_calls_are_refused_403(service: Service, call_received_factory):
    theirs = stl_call(call_received_factory, 7)
    status, _, body = await service.post("/v1/events", theirs, token=HOU_TOKEN)
    assert status == 403
    assert {e["field"] for e in body["errors"]} == {"call_id", "center_id"}

    mislabelled = call_received_factory(event_id="hou-911:8:received", call_id="hou-911:8", center_id="stl-911")
    status, _, body = await service.post("/v1/events", mislabelled, token=HOU_TOKEN)
    assert status == 403 and [e["field"] for e in body["errors"]] == ["center_id"]
    assert service.publisher.records == []


async def test_oversized_bodies_413_before_parsing(service: Service):
    status, _, body = await service.post("/v1/events", b"x" * (64 * 1024 + 1))
    assert status == 413 and body["error"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"y" * 1024

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {STL_TOKEN}"}
    async with service.client.post("/v1/events", data=chunks(), headers=headers) as response:
        assert response.status == 413  # no Content-Length: refused while reading


async def test_too_many_events_in_one_batch_413(service: Service, call_received_factory):
    events = [stl_call(call_received_factory, 100 + n, caller_phone=None) for n in range(101)]
    status, _, body = await service.post("/v1/events", ndjson(*events), content_type="application/x-ndjson")
    assert status == 413 and "101 events" in body["message"]


async def test_other_content_types_415(service: Service, call_received_factory):
    status, _, _ = await service.post("/v1/events", stl_call(call_received_factory, 9), content_type="text/plain")
    assert status == 415


async def test_while_kafka_is_unreachable_503_with_retry_after(service: Service, call_received_factory):
    service.publisher.down = True
    status, headers, body = await service.post("/v1/events", stl_call(call_received_factory, 10))

    assert status == 503 and headers["Retry-After"] == "7"
    assert "send the same request again" in body["message"]
    async with service.client.get("/readyz") as response:
        assert response.status == 503 and response.headers["Retry-After"] == "7"
    async with service.client.get("/healthz") as response:
        assert response.status == 200
    service.publisher.down = False
    async with service.client.get("/readyz") as response:
        assert response.status == 200 and (await response.json()) == {"ready": True}


async def test_posting_the_same_event_twice_gives_the_same_id(service: Service, call_received_factory):
    event = stl_call(call_received_factory, 11)
    first = await service.post("/v1/events", event)
    second = await service.post("/v1/events", event)
    assert first[2] == second[2] == {"accepted": 1, "event_ids": ["stl-911:11:received"]}
    assert service.publisher.records[0] == service.publisher.records[1]  # the worker keeps it once


async def test_an_eido_is_mapped_and_published_as_our_events(service: Service):
    document = json.loads((EIDO / "incident_dispatched.json").read_text(encoding="utf-8"))
    status, _, body = await service.post("/v1/eido", document)

    assert status == 202
    assert body["event_ids"] == ["stl-911:26-1001:received", "stl-911:26-1001:dispatched:P17",
                                 "stl-911:26-1001:arrived:CRT2"]
    published = [json.loads(value) for _, value in service.publisher.records]
    assert published[0]["center_id"] == "stl-911" and published[0]["incident_type_common"] == "MTLV"
    assert all(key == b"stl-911:26-1001" for key, _ in service.publisher.records)


async def test_an_eido_that_cannot_be_mapped_is_refused_naming_the_field(service: Service):
    document = json.loads((EIDO / "call_transfer_shape.json").read_text(encoding="utf-8"))
    status, _, body = await service.post("/v1/eido", document)
    assert status == 400 and body["error"] == "unmappable"
    assert [e["field"] for e in body["errors"]] == ["incidentComponent"]

    del document["eidoVersion"]
    document["callComponent"][0]["callStartTimestamp"] = "yesterday"
    status, _, body = await service.post("/v1/eido", document)
    assert status == 400
    assert {e["field"] for e in body["errors"]} == {"eidoVersion", "callComponent.0.callStartTimestamp"}
    assert service.publisher.records == []


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key (openssl, installed with the test tools)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-days", "1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_https_when_a_certificate_is_configured(certificate: tuple[Path, Path], call_received_factory):
    cert, key = certificate
    settings = IngestSettings(tls_cert=str(cert), tls_key=str(key))
    tokens = load_tokens(None, f"stl-911={hash_token(STL_TOKEN)}")
    runner = web.AppRunner(create_app(settings, tokens, MemoryPublisher(), IngestMetrics(CollectorRegistry())))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context(settings)).start()
    try:
        client_context = ssl.create_default_context(cafile=str(cert))
        client_context.check_hostname = False
        async with ClientSession() as session, session.post(
                f"https://127.0.0.1:{port}/v1/events", json=stl_call(call_received_factory, 12),
                headers={"Authorization": f"Bearer {STL_TOKEN}"}, ssl=client_context) as response:
            assert response.status == 202
    finally:
        await runner.cleanup()
    with pytest.raises(ValueError, match="both"):
        ssl_context(IngestSettings(tls_cert=str(cert)))
