"""The services the scenarios break, started on first use and shared by the scenarios of one suite run.

- ``kafka()``: one Apache Kafka node with a proxied listener (a ``TcpProxy`` can cut the worker
  off), killed and restarted by the broker scenario;
- ``cluster()``: three KRaft nodes, replication factor 3, ``min.insync.replicas`` 2;
- ``postgres()``: a PostgreSQL server on TCP with passwords, crashed and restarted by its scenario.

Kafka requires SASL/SCRAM here, as production should: every run's worker, the input and the
checks authenticate (``streams.security``), each as its own user, so every scenario also proves the
security settings under faults. Postgres requires passwords, and the worker logs in as a member of
the least-privilege ``crisis_worker`` role (``crisis.chaos.run``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from crisis.chaos.run import Deployment
from crisis.kafka_cluster import SCRAM_MECHANISM, KafkaCluster, Security
from crisis.pg_server import PostgresServer
from streams.config import Settings
from streams.security import kafka_client_options

BROKER_USER, WORKER_USER, SUITE_USER = "broker", "crisis-worker", "chaos-suite"


class ChaosServices:
    """Lazily started Kafka node, Kafka cluster and Postgres server; ``close`` stops what was started."""

    def __init__(self) -> None:
        self.passwords = {user: secrets.token_hex(16) for user in (BROKER_USER, WORKER_USER, SUITE_USER)}
        self.postgres_password = secrets.token_hex(16)
        self._kafka: KafkaCluster | None = None
        self._cluster: KafkaCluster | None = None
        self._postgres: PostgresServer | None = None

    def _security(self) -> Security:
        return Security(scram_users=dict(self.passwords))

    def kafka(self) -> KafkaCluster:
        """One node with a proxied listener (blocking: call it in a thread from async code)."""
        if self._kafka is None:
            self._kafka = KafkaCluster(1, self._security(), proxied=True).start()
        return self._kafka

    def cluster(self) -> KafkaCluster:
        """Three nodes (blocking)."""
        if self._cluster is None:
            self._cluster = KafkaCluster(3, self._security()).start()
        return self._cluster

    def postgres(self) -> PostgresServer:
        """The shared server (blocking)."""
        if self._postgres is None:
            self._postgres = PostgresServer(self.postgres_password).init().start()
        return self._postgres

    def client_settings(self, user: str) -> dict[str, Any]:
        """The ``Settings`` fields of a Kafka client logging in as ``user``."""
        return {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": SCRAM_MECHANISM,
                "kafka_sasl_username": user, "kafka_sasl_password": self.passwords[user]}

    def suite_options(self) -> dict[str, Any]:
        """aiokafka options of the suite's own clients (input, checks)."""
        return kafka_client_options(Settings(**self.client_settings(SUITE_USER)))

    def deployment(self, kafka: KafkaCluster, postgres: PostgresServer, worker_bootstrap: str | None = None,
                   worker_url: Callable[[str, str, str], str] | None = None,
                   worker_settings: Mapping[str, Any] | None = None) -> Deployment:
        """Where a run finds everything; the worker's way in may go through proxies or several servers."""
        return Deployment(
            kafka_bootstrap=kafka.bootstrap,
            kafka_options=self.suite_options(),
            admin_url=lambda database: postgres.url(database),
            worker_url=worker_url or (lambda database, user, password: postgres.url(database, user, password)),
            worker_bootstrap=worker_bootstrap,
            worker_settings={"replication_factor": kafka.replicas, "min_insync_replicas": kafka.min_insync,
                             **self.client_settings(WORKER_USER), **dict(worker_settings or {})},
        )

    def close(self) -> None:
        for service in (self._kafka, self._cluster):
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop()
        if self._postgres is not None:
            self._postgres.destroy()
        self._kafka = self._cluster = self._postgres = None

    def __enter__(self) -> ChaosServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
