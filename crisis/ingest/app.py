"""`crisis ingest`: the HTTP front door for CADs that cannot produce to Kafka.

- ``POST /v1/events``: one of our events (``application/json``) or a batch of them, one per line
  (``application/x-ndjson``). Every line is validated first; if any line is invalid the answer is
  400 listing every line's field errors and nothing is published, so a batch is all or nothing.
- ``POST /v1/eido``: a NENA EIDO document (``application/json``), mapped to our events.
- ``GET /healthz`` (the process runs), ``GET /readyz`` (Kafka reachable). Metrics on their own port.

Each handler is thin: authenticate, read (size-limited), validate, map (pure), check the center
owns the calls, publish, respond. Answers: 202 with the event ids once Kafka acknowledged every
record (acks=all); 400 with every field error; 401 without a valid token; 403 for another
center's calls; 413 for a body over the limit; 415 for another content type; 503 with
Retry-After while Kafka is unreachable. Posting the same event twice is harmless: the worker
stores each event id once. Bodies are never logged (they carry phone numbers).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from crisis.ingest.auth import TokenStore
from crisis.ingest.config import IngestSettings
from crisis.ingest.kafka import EventPublisher, PublishUnavailable
from domain.call_ids import belongs_to_center
from domain.eido_mapping import EidoMappingError, map_eido
from schemas.calls import CallEvent, CallReceived, decode_call_event, encode_call_event, field_errors
from schemas.eido import EidoDocument
from streams.metrics import UNAUTHENTICATED_LABEL, IngestMetrics

log = logging.getLogger(__name__)

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/jsonlines"})
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Problem:
    """One field error: which line of the body (1 for a single document), which field, what is wrong."""

    line: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The problem as it appears in the 400/403 answer's ``errors``."""
        return {"line": self.line, "field": self.field, "message": self.message}


class Refused(Exception):
    """A request answered with an error status and a JSON body saying why."""

    def __init__(self, status: int, error: str, message: str, problems: Sequence[Problem] = (),
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.problems = status, error, message, problems
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The JSON error answer."""
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.problems:
            body["errors"] = [problem.as_dict() for problem in self.problems]
        return web.json_response(body, status=self.status, headers=self.headers)


def _field_problems(line: int, exc: ValidationError) -> list[Problem]:
    """pydantic's errors as problems on one line of the body, input values left out."""
    return [Problem(line, where, message) for where, message in field_errors(exc)]


class IngestHandlers:
    """The routes, bound to one token store, one publisher and one metrics registry."""

    def __init__(self, settings: IngestSettings, tokens: TokenStore, publisher: EventPublisher,
                 metrics: IngestMetrics) -> None:
        self.settings = settings
        self.tokens = tokens
        self.publisher = publisher
        self.metrics = metrics

    # -- plumbing shared by both endpoints ---------------------------------------------------

    async def _serve(self, request: web.Request, endpoint: str,
                     handle: Callable[[str, bytes, str], Awaitable[list[CallEvent]]]) -> web.Response:
        started = time.perf_counter()
        center = UNAUTHENTICATED_LABEL
        try:
            center = self._authenticate(request)
            body = await self._read(request, endpoint)
            accepted = await handle(center, body, request.content_type)
            response = web.json_response(
                {"accepted": len(accepted), "event_ids": [event.event_id for event in accepted]}, status=202)
            # One label lookup per event type, not per event: a batch holds hundreds.
            for event_type, count in Counter(event.type for event in accepted).items():
                self.metrics.events_published.labels(center, event_type).inc(count)
        except Refused as refused:
            response = refused.response()
            if refused.status >= 500 or refused.status == 403:
                log.info("%s %s for center %s: %s", endpoint, refused.status, center, refused.message)
        self.metrics.requests.labels(endpoint, str(response.status), center).inc()
        self.metrics.request_duration.labels(endpoint).observe(time.perf_counter() - started)
        return response

    def _authenticate(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        center = self.tokens.center_for(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if center is None:
            raise Refused(401, "unauthenticated", "a valid bearer token is required (Authorization: Bearer <token>)",
                          headers={"WWW-Authenticate": 'Bearer realm="crisis-ingest"'})
        return center

    async def _read(self, request: web.Request, endpoint: str) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Refused(413, "too_large", f"the body is {request.content_length} bytes; the limit is {limit}")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise Refused(413, "too_large", f"the body is over the limit of {limit} bytes") from exc
        self.metrics.request_bytes.labels(endpoint).observe(len(body))
        return body

    def _check_owner(self, center: str, events: Sequence[tuple[int, CallEvent]]) -> None:
        problems = []
        for line, event in events:
            if not belongs_to_center(event.call_id, center):
                problems.append(Problem(line, "call_id", f"must start with '{center}:' (the calls of the center "
                                                          "this token belongs to)"))
            if isinstance(event, CallReceived) and event.center_id != center:
                problems.append(Problem(line, "center_id", f"must be '{center}' (the token's center)"))
        if problems:
            raise Refused(403, "forbidden", f"this token may only post center {center}'s calls", problems)

    async def _publish(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        try:
            await self.publisher.publish(records)
        except PublishUnavailable as exc:
            raise Refused(503, "unavailable", f"{exc}; nothing was accepted, send the same request again",
                          headers={"Retry-After": str(self.settings.retry_after_seconds)}) from exc

    # -- POST /v1/events ----------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        """``POST /v1/events``: one event (application/json) or a batch (application/x-ndjson)."""
        return await self._serve(request, "/v1/events", self._events)

    async def _events(self, center: str, body: bytes, content_type: str) -> list[CallEvent]:
        if content_type == JSON_TYPE:
            lines = [(1, body)]
        elif content_type in NDJSON_TYPES:
            lines = [(n, line) for n, line in enumerate(body.split(b"\n"), start=1) if line.strip()]
        else:
            raise Refused(415, "unsupported_media_type",
                          f"send {JSON_TYPE} (one event) or application/x-ndjson (one event per line)")
        if not lines:
            raise Refused(400, "invalid", "the body holds no event", [Problem(1, "(body)", "empty")])
        if len(lines) > self.settings.max_batch_events:
            raise Refused(413, "too_large", f"{len(lines)} events in one request; the limit is "
                                            f"{self.settings.max_batch_events}")
        decoded: list[tuple[int, CallEvent, bytes]] = []
        problems: list[Problem] = []
        for number, raw in lines:
            try:
                decoded.append((number, decode_call_event(raw), raw.strip()))
            except ValidationError as exc:
                problems += _field_problems(number, exc)
        if problems:
            raise Refused(400, "invalid", f"{len({p.line for p in problems})} invalid event(s); nothing was "
                                          "accepted (a batch is all or nothing)", problems)
        self._check_owner(center, [(number, event) for number, event, _ in decoded])
        # The bytes as sent (validated): the worker validates them again, and dead-letters them whole.
        await self._publish([(event.call_id.encode(), raw) for _, event, raw in decoded])
        return [event for _, event, _ in decoded]

    # -- POST /v1/eido ------------------------------------------------------------------------

    async def eido(self, request: web.Request) -> web.Response:
        """``POST /v1/eido``: a NENA EIDO document (application/json)."""
        return await self._serve(request, "/v1/eido", self._eido)

    async def _eido(self, center: str, body: bytes, content_type: str) -> list[CallEvent]:
        if content_type != JSON_TYPE:
            raise Refused(415, "unsupported_media_type", f"send the EIDO document as {JSON_TYPE}")
        try:
            document = EidoDocument.model_validate_json(body)
        except ValidationError as exc:
            raise Refused(400, "invalid", "not an EIDO document we can read", _field_problems(1, exc)) from exc
        try:
            events: list[CallEvent] = list(map_eido(document, center))
        except EidoMappingError as exc:
            raise Refused(400, "unmappable", "the EIDO cannot be mapped to call events",
                          [Problem(1, p.field, p.message) for p in exc.problems]) from exc
        await self._publish([(event.call_id.encode(), encode_call_event(event)) for event in events])
        return events

    # -- health -------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: the process serves requests."""
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """``GET /readyz``: 200 while Kafka is reachable, else 503 with Retry-After."""
        if self.publisher.ready:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": "Kafka is not reachable"}, status=503,
                                 headers={"Retry-After": str(self.settings.retry_after_seconds)})


def create_app(settings: IngestSettings, tokens: TokenStore, publisher: EventPublisher,
               metrics: IngestMetrics) -> web.Application:
    """The aiohttp application; the caller starts and stops ``publisher`` (``KafkaGate``)."""
    # aiohttp refuses bodies over client_max_size itself; one byte more so our own 413 check answers.
    app = web.Application(client_max_size=settings.max_body_bytes + 1)
    handlers = IngestHandlers(settings, tokens, publisher, metrics)
    app.router.add_post("/v1/events", handlers.events)
    app.router.add_post("/v1/eido", handlers.eido)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    metrics.start_at_zero(tokens.centers)
    return app


def ssl_context(settings: IngestSettings) -> ssl.SSLContext | None:
    """HTTPS when a certificate and key are configured (else put TLS in front, e.g. a load balancer)."""
    if not settings.tls_cert and not settings.tls_key:
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise ValueError("set both CRISIS_INGEST_TLS_CERT and CRISIS_INGEST_TLS_KEY, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def run_ingest() -> None:
    """Serve until SIGTERM/SIGINT (aiohttp finishes requests in flight), with metrics on their own port."""
    import prometheus_client

    from crisis.ingest.auth import load_tokens
    from crisis.ingest.kafka import KafkaGate
    from streams import topics
    from streams.config import Settings

    settings = Settings.from_env()
    ingest = IngestSettings.from_env()
    tokens = load_tokens(ingest.tokens_file, ingest.tokens)
    if not tokens.centers:
        raise ValueError("no center tokens: set CRISIS_INGEST_TOKENS_FILE or CRISIS_INGEST_TOKENS "
                         "(make one with `crisis ingest-token CENTER_ID`)")
    context = ssl_context(ingest)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    metrics = IngestMetrics(prometheus_client.REGISTRY)
    if ingest.metrics_port:
        prometheus_client.start_http_server(ingest.metrics_port, addr="0.0.0.0")
    gate = KafkaGate(settings, ingest, settings.topic(topics.CALLS), metrics)
    app = create_app(ingest, tokens, gate, metrics)

    async def start_gate(_: web.Application) -> None:
        """Start the Kafka gate with the server."""
        await gate.start()

    async def stop_gate(_: web.Application) -> None:
        """Stop the producer after the last request."""
        await gate.stop()

    app.on_startup.append(start_gate)
    app.on_cleanup.append(stop_gate)
    log.info("ingest for centers %s on %s:%d, topic %s", ", ".join(tokens.centers), ingest.host, ingest.port,
             settings.topic(topics.CALLS))
    web.run_app(app, host=ingest.host, port=ingest.port, ssl_context=context, access_log=None,
                print=lambda *_: None, shutdown_timeout=ingest.publish_timeout_seconds + 5)
