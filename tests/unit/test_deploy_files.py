"""The deployment files: docker-compose.yml, the Dockerfile and the Prometheus rules.

No Docker engine is needed: the compose file is checked as text (no YAML parser among our
dependencies), the alert rules with `promtool` (Debian's `prometheus` package, installed by `make deps`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streams.metrics import IngestMetrics, PipelineMetrics, ReportMetrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus"

# The broker settings a KRaft node needs (README, engineering notes): our start script writes them all.
REQUIRED_KAFKA_SETTINGS = (
    "node.id", "process.roles", "controller.quorum.voters", "listeners", "advertised.listeners",
    "listener.security.protocol.map", "controller.listener.names", "inter.broker.listener.name", "log.dirs",
    "offsets.topic.replication.factor", "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
)
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
START_BROKER = ROOT / "deploy" / "kafka" / "start-broker.sh"


def _service_block(text: str, name: str) -> str:
    """The lines of one top-level service (two-space indent) in the compose file."""
    match = re.search(rf"^  {name}:\n((?:    .*\n|\s*\n)+)", text, re.MULTILINE)
    assert match, f"service {name!r} missing from docker-compose.yml"
    return match.group(1)


def _setting(block: str, key: str) -> str:
    match = re.search(rf"^\s+{key}:\s*(.+?)\s*$", block, re.MULTILINE)
    assert match, f"{key} not set"
    return match.group(1)


def test_compose_defines_the_services() -> None:
    text = COMPOSE.read_text()
    for name in (*KAFKA_NODES, "postgres", "migrate", "worker", "prometheus", "grafana"):
        _service_block(text, name)


def test_compose_runs_three_kraft_nodes_from_the_official_image_with_our_start_script() -> None:
    text = COMPOSE.read_text()
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS: 1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093" in text
    for number, name in enumerate(KAFKA_NODES, start=1):
        block = _service_block(text, name)
        assert "image: apache/kafka:4.0.1" in block
        assert 'entrypoint: ["/bin/bash", "/opt/crisis/start-broker.sh"]' in block
        assert _setting(block, "KAFKA_NODE_ID") == str(number)
        assert f"kafka-{number}-data:/var/lib/kafka/data" in block
        assert "./deploy/tls/out:/etc/crisis/tls:ro" in block
        assert f'"--bootstrap-server", "{name}:9092"' in block and "--command-config" in block
    script = START_BROKER.read_text()
    for key in REQUIRED_KAFKA_SETTINGS:
        assert re.search(rf"^{re.escape(key)}=", script, re.MULTILINE), f"start-broker.sh does not set {key}"
    for line in ("default.replication.factor=3", "min.insync.replicas=2", "offsets.topic.replication.factor=3",
                 "transaction.state.log.min.isr=2", "unclean.leader.election.enable=false",
                 "listener.security.protocol.map=INTERNAL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:SSL",
                 "listener.name.controller.ssl.client.auth=required", "auto.create.topics.enable=false"):
        assert line in script, line


def test_compose_publishes_nothing_beyond_loopback_and_hard_codes_no_secret() -> None:
    text = COMPOSE.read_text()
    published = re.findall(r'^\s+- "([^"]+:\d+)"$', text, re.MULTILINE)
    assert published and all(port.startswith("127.0.0.1:") for port in published), published
    assert "crisis:crisis" not in text and "PLAINTEXT" not in text
    for secret in ("KAFKA_BROKER_PASSWORD", "KAFKA_WORKER_PASSWORD", "KAFKA_CAD_PASSWORD",
                   "POSTGRES_SUPERUSER_PASSWORD", "CRISIS_DB_OWNER_PASSWORD", "CRISIS_DB_WORKER_PASSWORD",
                   "CRISIS_DB_REPORTS_PASSWORD",
                   "CRISIS_DB_AUDITOR_PASSWORD", "CRISIS_DB_RETENTION_PASSWORD", "CRISIS_PSEUDONYM_KEY",
                   "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(rf"\$\{{{secret}:\?", text), f"{secret} must be required from the environment"


def test_compose_worker_wiring() -> None:
    text = COMPOSE.read_text()
    worker = _service_block(text, "worker")
    assert "KAFKA_BOOTSTRAP: kafka-1:9092,kafka-2:9092,kafka-3:9092" in text
    assert "KAFKA_SECURITY_PROTOCOL: SASL_SSL" in text and "KAFKA_SASL_MECHANISM: SCRAM-SHA-512" in text
    assert 'CRISIS_REPLICATION_FACTOR: "3"' in text and 'CRISIS_MIN_INSYNC_REPLICAS: "2"' in text
    assert ("DATABASE_URL: postgresql://crisis_app:${CRISIS_DB_WORKER_PASSWORD}@postgres:5432/crisis"
            "?sslmode=verify-full&sslrootcert=/etc/crisis/tls/ca.crt") in worker
    assert "CRISIS_PSEUDONYM_KEY: ${CRISIS_PSEUDONYM_KEY:?set a secret key}" in worker
    assert '"9108"' in worker
    for name in KAFKA_NODES:
        assert re.search(rf"{name}:\n\s+condition: service_healthy", worker)
    assert re.search(r"migrate:\n\s+condition: service_completed_successfully", worker)
    migrate = _service_block(text, "migrate")
    assert '["crisis", "migrate"]' in migrate and "postgresql://crisis_owner:" in migrate
    assert re.search(r"postgres:\n\s+condition: service_healthy", migrate)
    postgres = _service_block(text, "postgres")
    assert "pg_isready" in postgres and "./deploy/postgres/init:/docker-entrypoint-initdb.d:ro" in postgres
    assert "ports:" not in postgres, "Postgres is for the compose network only"
    prometheus = _service_block(text, "prometheus")
    assert "./deploy/prometheus/prometheus.yml:" in prometheus
    assert "./deploy/prometheus/alerts.yml:" in prometheus


def test_dockerfile_installs_every_package_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    packages = re.search(r'include = \[(.*?)\]', (ROOT / "pyproject.toml").read_text()).group(1)
    for package in re.findall(r'"(\w+)\*"', packages):
        assert re.search(rf"^COPY {package} ", text, re.MULTILINE), f"Dockerfile does not copy {package}"
    assert "pip install -c requirements.lock ." in text
    assert re.search(r"^USER (?!root\b|0\b)\S+$", text, re.MULTILINE)
    assert 'CMD ["crisis", "worker"]' in text


def metric_families() -> list:  # type: ignore[type-arg]
    """The worker's metrics, the ingest service's, and the report job's (written for node_exporter's textfile
    collector)."""
    return [*PipelineMetrics(CollectorRegistry()).registry.collect(),
            *IngestMetrics(CollectorRegistry()).registry.collect(), *ReportMetrics().registry.collect()]


def exposed_metric_names() -> set[str]:
    """Every name under which our metrics can be queried (the worker's, the ingest service's, the report
    job's): family names, with their type's suffixes."""
    families = metric_families()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in families for suffix in (*suffixes[family.type], "")}


def test_alert_rules_use_only_metrics_the_worker_exposes() -> None:
    exposed = exposed_metric_names()
    used = set(re.findall(r"\bcrisis_[a-z_]+", (PROMETHEUS / "alerts.yml").read_text()))
    assert used, "no crisis_* metric in alerts.yml"
    assert used <= exposed, f"alerts.yml uses metrics the worker does not expose: {sorted(used - exposed)}"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make deps` or `apt-get install prometheus` (Debian)")
    return subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_prometheus_config_is_valid() -> None:
    result = _promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = _promtool("test", "rules", "deploy/prometheus/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
