"""The compose stack's own scripts, run here on the real binaries (no Docker engine exists here):

- ``deploy/kafka/start-broker.sh`` formats a KRaft node with its SCRAM users and starts it with
  SASL_SSL client listeners and a mutual-TLS controller listener; a client with the right user
  and the CA produces, a wrong password is refused, and so is clear text;
- ``deploy/postgres/init/10-roles.sh`` creates the owner and one login per least-privilege role;
  the migrations run as the owner, the pipeline as ``crisis_app``, reports as ``crisis_reports``.

What remains untested is Docker itself (networking, volumes, the images' entrypoints).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from crisis.pg_server import PostgresServer
from crisis.services import REPO_ROOT, fetch_kafka_jars, free_port, wait_for_port
from domain.policy import load_policy
from sinks.migrate import migrate
from sinks.postgres import PostgresStore
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import ListPublisher
from streams.security import kafka_client_options
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration


def _fake_kafka_home(root: Path) -> Path:
    """The two scripts of the image's /opt/kafka/bin the start script calls, on the jars Maven fetched."""
    libs = fetch_kafka_jars()
    java = shutil.which("java")
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name, main in (("kafka-storage.sh", "kafka.tools.StorageTool"), ("kafka-server-start.sh", "kafka.Kafka")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{java}" -Xmx512m -cp "{libs}/*" {main} "$@"\n')
        script.chmod(0o755)
    return root


@pytest.fixture
def broker_from_start_script(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    tls = tmp_path / "tls"
    subprocess.run([str(REPO_ROOT / "deploy/tls/make-certs.sh"), str(tls), "localhost", "DNS:localhost"],
                   check=True, capture_output=True)
    internal, controller, external = free_port(), free_port(), free_port()
    passwords = {"broker": secrets.token_hex(8), "cad": secrets.token_hex(8)}
    env = {**os.environ, "KAFKA_HOME": str(_fake_kafka_home(tmp_path / "kafka")), "KAFKA_TLS_DIR": str(tls),
           "KAFKA_DATA_DIR": str(tmp_path / "data"), "KAFKA_CONFIG_DIR": str(tmp_path / "config"),
           "KAFKA_HOSTNAME": "localhost", "KAFKA_LISTEN_HOST": "127.0.0.1", "KAFKA_NODE_ID": "1",
           "CLUSTER_ID": "4L6g3nShT-eMCtK--X86sw", "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@localhost:{controller}",
           "KAFKA_INTERNAL_PORT": str(internal), "KAFKA_CONTROLLER_PORT": str(controller),
           "KAFKA_EXTERNAL_PORT": str(external), "KAFKA_HOST_PORT": str(external),
           "KAFKA_BROKER_PASSWORD": passwords["broker"], "KAFKA_SCRAM_USERS": f"cad:{passwords['cad']}"}
    log = (tmp_path / "broker.log").open("wb")
    process = subprocess.Popen(["bash", str(REPO_ROOT / "deploy/kafka/start-broker.sh")], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(external, 120, process)
        yield f"localhost:{external}", passwords, tls
    finally:
        process.kill()
        process.wait()
        log.close()


async def _produces(bootstrap: str, options: dict[str, object]) -> bool:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000, **options)
    try:
        await asyncio.wait_for(producer.start(), 30)
        await asyncio.wait_for(producer.send_and_wait(topics.CALLS, b"{}", key=b"k"), 30)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await producer.stop()


async def test_the_compose_broker_script_serves_sasl_ssl_only(broker_from_start_script):
    bootstrap, passwords, tls = broker_from_start_script
    cad = Settings(kafka_bootstrap=bootstrap, kafka_security_protocol="SASL_SSL", kafka_sasl_username="cad",
                   kafka_sasl_password=passwords["cad"], kafka_ssl_cafile=str(tls / "ca.crt"))
    # One node here: our topics with one copy (the compose stack creates them with three).
    for _ in range(60):  # the broker registers with its controller (mutual TLS) a little after it listens
        try:
            await ensure_topics(cad, replication_factor=1)
            break
        except (KafkaError, OSError):
            await asyncio.sleep(1)
    options = kafka_client_options(cad)
    assert await _produces(bootstrap, options)
    assert not await _produces(bootstrap, {**options, "sasl_plain_password": "wrong"})
    assert not await _produces(bootstrap, {})


async def test_the_compose_roles_script_then_migrations_as_owner_and_pipeline_as_worker(tmp_path):
    passwords = {name: secrets.token_hex(8) for name in ("OWNER", "WORKER", "REPORTS", "AUDITOR", "RETENTION")}
    server = PostgresServer(secrets.token_hex(8))
    try:
        await asyncio.to_thread(server.init().start)
        await asyncio.to_thread(server.psql, "CREATE DATABASE crisis")
        env = {**os.environ, "PGHOST": str(server.base_dir), "PGPORT": str(server.port), "POSTGRES_USER": "postgres",
               "POSTGRES_DB": "crisis", **{f"CRISIS_DB_{name}_PASSWORD": value for name, value in passwords.items()}}
        result = await asyncio.to_thread(subprocess.run, ["bash", str(REPO_ROOT / "deploy/postgres/init/10-roles.sh")],
                                         env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert await migrate(server.url("crisis", "crisis_owner", passwords["OWNER"]))
        worker_url = server.url("crisis", "crisis_app", passwords["WORKER"])
        store = await PostgresStore.connect(worker_url)
        try:
            call = {"type": "call.received", "event_id": "d-1", "call_id": "d-1", "occurred_at": "2025-01-06T12:00:00Z",
                    "center_id": "stl-911", "nature_code": "MENTAL", "concerns": ["mental_health"],
                    "district": "district-1", "caller_phone": "+13145550100"}
            pipeline = CallPipeline(Settings(timer_clock="event", pseudonym_key="k"), load_policy(), store,
                                    ListPublisher(), PipelineMetrics(CollectorRegistry()))
            await pipeline.handle([InboundRecord(topics.CALLS, 0, 0, b"d-1", json.dumps(call).encode())])
        finally:
            await store.close()
        reports = await asyncpg.connect(server.url("crisis", "crisis_reports", passwords["REPORTS"]))
        try:
            assert await reports.fetchval("SELECT count(*) FROM report_calls") == 1
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reports.fetchval("SELECT caller_phone FROM calls")
        finally:
            await reports.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(server.url("crisis", "crisis_app", "wrong"))
    finally:
        await asyncio.to_thread(server.destroy)
