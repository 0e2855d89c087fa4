"""Apache Kafka nodes the tests and the fault-injection suite can kill, restart, secure and replicate.

``ApacheKafkaBroker`` (``crisis.services``) is the tests' shared single broker. This module starts
brokers a test may break: ``KafkaCluster(size)`` runs ``size`` KRaft nodes on loopback (each one
broker and controller, all of them voters), with

- **replication** like production: internal topics with ``min(3, size)`` copies and
  ``min.insync.replicas`` ``min(2, size)``;
- **hard kills and restarts** on the same data directory and ports (``kill``, ``start``), as a
  machine crash and reboot would do (``StreamsBrokerBounceTest``);
- optional **SASL/SCRAM** (users created when the storage is formatted, KIP-900: KRaft keeps SCRAM
  credentials in its metadata log, so the first ones must exist before the first start) and **TLS**
  (PEM files from ``deploy/tls/make-certs.sh``) on the client listener, which brokers also use
  between themselves;
- optional **proxied listener**: a second client listener advertised at another port, where a TCP
  proxy the test controls forwards to it. Clients that bootstrap there get the proxy's address in
  their metadata, so every connection they make goes through the proxy; everyone else connects
  directly.

Controllers talk PLAINTEXT on loopback here (KRaft cannot use SCRAM between controllers); the
compose stack uses mutual TLS there instead (``deploy/kafka/start-broker.sh``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crisis.services import ServiceError, fetch_kafka_jars, free_port, wait_for_port

SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA that signed the brokers' certificate, and the broker's key with its certificate chain."""

    ca: Path
    keystore: Path  # private key (PKCS#8, unencrypted) followed by the certificate chain


@dataclass(frozen=True)
class Security:
    """How the client listener is protected; ``protocol`` is Kafka's security protocol name."""

    scram_users: Mapping[str, str] | None = None  # name -> password; the first one is the brokers' own
    tls: TlsFiles | None = None

    @property
    def protocol(self) -> str:
        if self.scram_users and self.tls:
            return "SASL_SSL"
        if self.scram_users:
            return "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"


class KafkaNode:
    """One KRaft node (broker and controller in one JVM) of a ``KafkaCluster``."""

    def __init__(self, cluster: KafkaCluster, node_id: int, proxied: bool) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.port = free_port()
        self.controller_port = free_port()
        # The proxied listener binds here; clients are told to connect to proxy_port, where the proxy listens.
        self.proxied_port = free_port() if proxied else None
        self.proxy_port = free_port() if proxied else None
        self.workdir = cluster.workdir / f"node-{node_id}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def properties(self) -> dict[str, str]:
        cluster, security = self.cluster, self.cluster.security
        listeners = {"CLIENT": self.port, "CONTROLLER": self.controller_port}
        advertised = {"CLIENT": self.port}
        if self.proxied_port is not None and self.proxy_port is not None:
            listeners["PROXIED"] = self.proxied_port
            advertised["PROXIED"] = self.proxy_port
        protocol = security.protocol
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": cluster.voters,
            "listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, port in listeners.items()),
            "advertised.listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, port in advertised.items()),
            "listener.security.protocol.map": f"CLIENT:{protocol},CONTROLLER:PLAINTEXT,PROXIED:{protocol}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "CLIENT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(cluster.replicas),
            "min.insync.replicas": str(cluster.min_insync),
            "offsets.topic.replication.factor": str(cluster.replicas),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": str(cluster.replicas),
            "transaction.state.log.min.isr": str(cluster.min_insync),
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "9223372036854775807",
        }
        if security.scram_users:
            broker_user, broker_password = next(iter(security.scram_users.items()))
            jaas = f'{SCRAM_LOGIN} required username="{broker_user}" password="{broker_password}";'
            props.update({
                "sasl.enabled.mechanisms": SCRAM_MECHANISM,
                "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
                f"listener.name.client.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": jaas,
                f"listener.name.proxied.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": jaas,
            })
        if security.tls:
            props.update({
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(security.tls.keystore),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(security.tls.ca),
            })
        props.update(cluster.extra_properties)
        return props

    def _config_file(self) -> Path:
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in self.properties().items()))
        return path

    def formatted(self) -> bool:
        return (self.workdir / "data" / "meta.properties").exists()

    def format(self, cluster_id: str) -> None:
        scram = [arg for name, password in (self.cluster.security.scram_users or {}).items()
                 for arg in ("--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]")]
        result = subprocess.run(
            self.cluster.java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self._config_file()),
                              *scram),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"formatting Kafka node {self.node_id} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        """Start the JVM (after a kill: same data directory, same ports); returns once the client port is open."""
        if self.alive():
            return
        config = self._config_file()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.cluster.java("kafka.Kafka", str(config)),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            wait_for_port(self.port, 120, self.process)
        except ServiceError as exc:
            raise ServiceError(f"Kafka node {self.node_id} did not start: {exc}\n"
                               f"{self.log_path.read_text(errors='replace')[-3000:]}") from exc

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown, no flush; as a machine losing power (the page cache survives)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_seconds: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self.kill()


class KafkaCluster:
    """``size`` KRaft nodes on loopback; ``bootstrap`` lists them all.

    ``extra_properties`` override any broker setting (for example shorter session timeouts).
    """

    def __init__(self, size: int = 1, security: Security | None = None, proxied: bool = False,
                 extra_properties: Mapping[str, str] | None = None, heap_mb: int = 512) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.size = size
        self.replicas = min(3, size)
        self.min_insync = min(2, size)
        self.security = security or Security()
        self.extra_properties = dict(extra_properties or {})
        self.heap_mb = heap_mb
        self.workdir = Path(tempfile.mkdtemp(prefix="crisis-kafka-cluster-"))
        self.cluster_id = uuid.uuid4().hex[:22]
        self.nodes = [KafkaNode(self, node_id, proxied) for node_id in range(1, size + 1)]
        self.voters = ",".join(f"{node.node_id}@127.0.0.1:{node.controller_port}" for node in self.nodes)
        self._libs: Path | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def proxied_bootstrap(self) -> str:
        """Where clients bootstrap to reach the cluster through the proxies (``proxied=True``)."""
        return ",".join(f"127.0.0.1:{node.proxy_port}" for node in self.nodes if node.proxy_port is not None)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("Java is not installed: run `make deps` or `apt-get install openjdk-17-jre-headless`")
        if self._libs is None:
            self._libs = fetch_kafka_jars()
        log4j = self.workdir / "log4j2.properties"
        if not log4j.exists():
            log4j.write_text(
                "rootLogger.level = WARN\nrootLogger.appenderRef.out.ref = out\n"
                "appender.out.type = Console\nappender.out.name = out\n"
                "appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            )
        return [java, f"-Xms{min(256, self.heap_mb)}m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC",
                "-cp", f"{self._libs}/*", f"-Dlog4j2.configurationFile={log4j}", main, *args]

    def start(self) -> KafkaCluster:
        """Format every node (once) and start them all; the ports are open when this returns."""
        try:
            for node in self.nodes:
                if not node.formatted():
                    node.format(self.cluster_id)
            for node in self.nodes:
                with node.log_path.open("ab") as log:
                    node.process = subprocess.Popen(
                        self.java("kafka.Kafka", str(node._config_file())),
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    )
            # The nodes start together: a controller quorum needs a majority before any broker registers.
            deadline = time.monotonic() + 180
            for node in self.nodes:
                wait_for_port(node.port, max(1.0, deadline - time.monotonic()), node.process)
        except ServiceError:
            self.stop()
            raise
        return self

    def kill(self, node_ids: Sequence[int] | None = None) -> None:
        for node in self.nodes:
            if node_ids is None or node.node_id in node_ids:
                node.kill()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
