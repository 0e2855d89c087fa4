"""The compose stack's own scripts, run here on the real binaries (no Docker engine exists here):

- ``deploy/kafka/start-broker.sh`` formats a KRaft node and starts it with SASL_SSL client listeners,
  a mutual-TLS controller listener and the StandardAuthorizer; ``deploy/kafka/access.sh`` creates the
  clients' SCRAM users and grants each its part: a real worker runs the pipeline under its grants, a
  partner reads the partner topics and is refused the inbound and dead-letter topics, the CAD only
  writes the inbound topic; a wrong password is refused, and so is clear text;
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
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError
from prometheus_client import CollectorRegistry

from agents.decoding import InboundRecord
from agents.pipeline import CallPipeline
from crisis.pg_server import PostgresServer
from crisis.services import REPO_ROOT, WorkerProcess, fetch_kafka_jars, free_port, wait_for_port
from domain.policy import load_policy
from sinks.migrate import migrate
from sinks.postgres import PostgresStore
from streams import topics
from streams.config import Settings
from streams.metrics import PipelineMetrics
from streams.publisher import ListPublisher
from streams.security import kafka_client_options
from streams.topics import ensure_topics
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def _fake_kafka_home(root: Path) -> Path:
    """The scripts of the image's /opt/kafka/bin ours call, on the jars Maven fetched."""
    libs = fetch_kafka_jars()
    java = shutil.which("java")
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    # The command-line tools start a JVM each and run for a second: the quick compiler and a small heap.
    tool = "-Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
    for name, main, options in (("kafka-storage.sh", "kafka.tools.StorageTool", tool),
                                ("kafka-server-start.sh", "kafka.Kafka", "-Xmx256m"),
                                ("kafka-acls.sh", "org.apache.kafka.tools.AclCommand", tool),
                                ("kafka-configs.sh", "kafka.admin.ConfigCommand", tool)):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{java}" {options} -cp "{libs}/*" {main} "$@"\n')
        script.chmod(0o755)
    return root


PREFIX = "acl-test."
APP_ID = "crisis-acl-test"


@dataclass
class SecuredKafka:
    """A broker started by the compose script, access granted by the compose job's script."""

    bootstrap: str
    tls: Path
    passwords: dict[str, str]

    def as_user(self, user: str, **changes: Any) -> Settings:
        return Settings(kafka_bootstrap=self.bootstrap, kafka_security_protocol="SASL_SSL", kafka_sasl_username=user,
                        kafka_sasl_password=self.passwords[user], kafka_ssl_cafile=str(self.tls / "ca.crt"),
                        topic_prefix=PREFIX, app_id=APP_ID, **changes)


@pytest.fixture
def secured_kafka(tmp_path: Path) -> Iterator[SecuredKafka]:
    tls = tmp_path / "tls"
    subprocess.run([str(REPO_ROOT / "deploy/tls/make-certs.sh"), str(tls), "localhost", "DNS:localhost"],
                   check=True, capture_output=True)
    internal, controller, external = free_port(), free_port(), free_port()
    passwords = {name: secrets.token_hex(8) for name in ("broker", "crisis-worker", "crisis-ingest", "cad",
                                                         "county-mh")}
    home = _fake_kafka_home(tmp_path / "kafka")
    env = {**os.environ, "KAFKA_HOME": str(home), "KAFKA_TLS_DIR": str(tls),
           "KAFKA_DATA_DIR": str(tmp_path / "data"), "KAFKA_CONFIG_DIR": str(tmp_path / "config"),
           "KAFKA_HOSTNAME": "localhost", "KAFKA_LISTEN_HOST": "127.0.0.1", "KAFKA_NODE_ID": "1",
           "CLUSTER_ID": "4L6g3nShT-eMCtK--X86sw", "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@localhost:{controller}",
           "KAFKA_INTERNAL_PORT": str(internal), "KAFKA_CONTROLLER_PORT": str(controller),
           "KAFKA_EXTERNAL_PORT": str(external), "KAFKA_HOST_PORT": str(external),
           "KAFKA_BROKER_PASSWORD": passwords["broker"], "KAFKA_REPLICATION_FACTOR": "1",
           "KAFKA_MIN_INSYNC_REPLICAS": "1"}
    log = (tmp_path / "broker.log").open("wb")
    process = subprocess.Popen(["bash", str(REPO_ROOT / "deploy/kafka/start-broker.sh")], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(external, 120, process)
        access_env = {**env, "KAFKA_BOOTSTRAP": f"localhost:{external}",
                      "KAFKA_WORKER_PASSWORD": passwords["crisis-worker"],
                      "KAFKA_INGEST_PASSWORD": passwords["crisis-ingest"], "KAFKA_CAD_PASSWORD": passwords["cad"],
                      "KAFKA_PARTNERS": f"county-mh:{passwords['county-mh']}",
                      "CRISIS_TOPIC_PREFIX": PREFIX, "CRISIS_APP_ID": APP_ID}
        for _ in range(30):  # the broker registers with its controller (mutual TLS) a little after it listens
            result = subprocess.run(["bash", str(REPO_ROOT / "deploy/kafka/access.sh")], env=access_env,
                                    capture_output=True, text=True, check=False)
            if result.returncode == 0:
                break
            time.sleep(2)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        yield SecuredKafka(f"localhost:{external}", tls, passwords)
    finally:
        process.kill()
        process.wait()
        log.close()


async def _produces(settings: Settings, topic: str, **options: Any) -> bool:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", request_timeout_ms=5000,
                                **{**kafka_client_options(settings), **options})
    try:
        await asyncio.wait_for(producer.start(), 30)
        await asyncio.wait_for(producer.send_and_wait(settings.topic(topic), b"{}", key=b"k"), 30)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await producer.stop()


async def _reads(settings: Settings, topic: str, group: str) -> list[bytes] | None:
    """The values on ``topic`` read in ``group`` (``None``: refused, on the topic or the group)."""
    consumer = AIOKafkaConsumer(settings.topic(topic), bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **kafka_client_options(settings))
    values: list[bytes] = []
    try:
        await asyncio.wait_for(consumer.start(), 30)
        for _ in range(10):
            batches = await consumer.getmany(timeout_ms=1000)
            values += [record.value for records in batches.values() for record in records if record.value]
            if values:
                break
        return values
    except (TopicAuthorizationFailedError, GroupAuthorizationFailedError):
        return None
    finally:
        await consumer.stop()


async def test_the_compose_brokers_serve_sasl_ssl_only_and_each_principal_only_its_part(
        secured_kafka: SecuredKafka, database_url: str, call_received_factory: Any) -> None:
    """The compose stack's Kafka as it runs: SASL/SCRAM over TLS, the ACLs of deploy/kafka/access.sh."""
    kafka = secured_kafka
    worker, cad = kafka.as_user("crisis-worker"), kafka.as_user("cad")
    partner, ingest = kafka.as_user("county-mh"), kafka.as_user("crisis-ingest")
    # The worker creates our topics (one copy on one node; the compose stack makes three).
    await ensure_topics(worker, replication_factor=1)

    # Authentication: a wrong password and clear text are refused.
    assert await _produces(cad, topics.CALLS)
    assert not await _produces(cad, topics.CALLS, sasl_plain_password="wrong")
    assert not await _produces(Settings(kafka_bootstrap=kafka.bootstrap, topic_prefix=PREFIX), topics.CALLS)

    # The CAD and the ingest service write the inbound topic and nothing else; neither reads it.
    assert await _produces(ingest, topics.CALLS)
    assert not await _produces(cad, topics.TRIAGE)
    assert await _reads(cad, topics.CALLS, "cad-reader") is None

    # The worker runs the pipeline end to end under its grants: reads the inbound topic in its group,
    # writes a decision and a dead letter (the CAD's two test records above are dead letters too).
    call = call_received_factory(call_id="acl-1", event_id="acl-1-r")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", **kafka_client_options(cad))
    await producer.start()
    try:
        await producer.send_and_wait(cad.topic(topics.CALLS), json.dumps(call).encode(), key=b"acl-1")
    finally:
        await producer.stop()
    process = WorkerProcess({**replace(worker, database_url=database_url, pseudonym_key="k", metrics_port=free_port(),
                                       timer_clock="event", broker_session_timeout_seconds=10).as_env()},
                            name="acl-worker").start()
    try:
        async def decided() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return bool(await conn.fetchval("SELECT count(*) FROM triage_decisions WHERE call_id = 'acl-1'"))
            finally:
                await conn.close()

        await wait_until(decided, 90)
        assert not await _produces(worker, topics.CALLS), "the worker may not write the inbound topic"

        # A partner reads the partner topics in groups named after it, and never the inbound topic
        # (phone numbers) or the dead letters (the original bytes); it writes nothing.
        decisions = await _reads(partner, topics.TRIAGE, "county-mh-decisions")
        assert decisions and json.loads(decisions[0])["call_id"] == "acl-1"
        assert await _reads(partner, topics.SLA, "county-mh-sla") == []
        assert await _reads(partner, topics.CALLS, "county-mh-inbound") is None
        assert await _reads(partner, topics.DEADLETTER, "county-mh-letters") is None
        assert await _reads(partner, topics.TRIAGE, "crisis-acl-test") is None, "not the pipeline's group"
        assert await _reads(partner, topics.TRIAGE, "someone-else") is None
        assert not await _produces(partner, topics.TRIAGE)
        assert not await _produces(partner, topics.CALLS)
        # The worker wrote its dead letters; it cannot read them back (operators do, as the admin user).
        assert await _reads(worker, topics.DEADLETTER, APP_ID + "-letters") is None
        assert await _reads(kafka.as_user("broker"), topics.DEADLETTER, "ops-dead-letters")
    finally:
        process.stop()
    assert "Authorization" not in process.log_tail(20000), process.log_tail()


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
