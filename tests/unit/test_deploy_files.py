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

# The apache/kafka image drops its default config as soon as one KAFKA_* variable is set.
REQUIRED_KAFKA_SETTINGS = (
    "CLUSTER_ID",
    "KAFKA_PROCESS_ROLES",
    "KAFKA_NODE_ID",
    "KAFKA_CONTROLLER_QUORUM_VOTERS",
    "KAFKA_LISTENERS",
    "KAFKA_CONTROLLER_LISTENER_NAMES",
    "KAFKA_INTER_BROKER_LISTENER_NAME",
    "KAFKA_LOG_DIRS",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
)


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
    for name in ("kafka", "postgres", "migrate", "worker", "prometheus", "ingest"):
        _service_block(text, name)


def test_compose_ingest_wiring() -> None:
    text = COMPOSE.read_text()
    ingest = _service_block(text, "ingest")
    assert '["crisis", "ingest"]' in ingest
    assert "CRISIS_INGEST_TOKENS: ${CRISIS_INGEST_TOKENS:?" in ingest, "no default token: each center gets its own"
    assert "CRISIS_INGEST_HOST: 0.0.0.0" in ingest
    assert '"8080:8080"' in ingest
    assert re.search(r"kafka:\n\s+condition: service_healthy", ingest)
    assert "/healthz" in ingest
    assert "ingest:9109" in (PROMETHEUS / "prometheus.yml").read_text()


def test_compose_kafka_gives_every_required_setting() -> None:
    kafka = _service_block(COMPOSE.read_text(), "kafka")
    assert "image: apache/kafka:4.0.1" in kafka
    missing = [key for key in REQUIRED_KAFKA_SETTINGS if not re.search(rf"^\s+{key}:", kafka, re.MULTILINE)]
    assert not missing, f"kafka service lacks {missing}"
    assert "CONTROLLER://" in _setting(kafka, "KAFKA_LISTENERS")
    assert _setting(kafka, "KAFKA_CONTROLLER_LISTENER_NAMES") == "CONTROLLER"
    assert "broker" in _setting(kafka, "KAFKA_PROCESS_ROLES")
    assert "controller" in _setting(kafka, "KAFKA_PROCESS_ROLES")
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert _setting(kafka, key) == "1", key
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in kafka
    assert "kafka-data:/var/lib/kafka/data" in kafka


def test_compose_worker_wiring() -> None:
    text = COMPOSE.read_text()
    worker = _service_block(text, "worker")
    assert "KAFKA_BOOTSTRAP: kafka:9092" in text
    assert "DATABASE_URL: postgresql://crisis:crisis@postgres:5432/crisis" in text
    assert "CRISIS_PSEUDONYM_KEY: ${CRISIS_PSEUDONYM_KEY:?set a secret key}" in worker
    assert '"9108"' in worker
    assert re.search(r"kafka:\n\s+condition: service_healthy", worker)
    assert re.search(r"migrate:\n\s+condition: service_completed_successfully", worker)
    migrate = _service_block(text, "migrate")
    assert '["crisis", "migrate"]' in migrate
    assert re.search(r"postgres:\n\s+condition: service_healthy", migrate)
    assert "pg_isready" in _service_block(text, "postgres")
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
