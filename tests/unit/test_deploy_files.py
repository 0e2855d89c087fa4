"""The deployment files: docker-compose.yml, the Dockerfile, the Kafka scripts and the Prometheus rules.

No Docker engine runs here, so the compose file is interpolated like Compose does (``${VAR:?}``,
``${VAR:-default}``), parsed, validated against the Compose specification's JSON schema (the copy
check-jsonschema vendors) and then checked against the code it runs: every variable a service sets is one
our settings read, ports and health paths are the ones the processes serve, the Kafka grants name our
topics. The alert rules are checked with ``promtool`` (Debian's ``prometheus`` package, ``make deps``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import check_jsonschema
import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams import topics
from streams.config import Settings
from streams.metrics import IngestMetrics, PipelineMetrics, ReportMetrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus"
START_BROKER = ROOT / "deploy" / "kafka" / "start-broker.sh"
ACCESS = ROOT / "deploy" / "kafka" / "access.sh"
ROLES = ROOT / "deploy" / "postgres" / "init" / "10-roles.sh"
COMPOSE_SCHEMA = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"

# The broker settings a KRaft node needs (README, engineering notes): our start script writes them all.
REQUIRED_KAFKA_SETTINGS = (
    "node.id", "process.roles", "controller.quorum.voters", "listeners", "advertised.listeners",
    "listener.security.protocol.map", "controller.listener.names", "inter.broker.listener.name", "log.dirs",
    "offsets.topic.replication.factor", "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
)
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
SERVICES = {*KAFKA_NODES, "kafka-access", "postgres", "migrate", "worker", "ingest", "report", "purge",
            "node-exporter", "prometheus", "grafana"}
# Every secret the operator must provide (README, "Production: docker compose").
SECRETS = {"KAFKA_BROKER_PASSWORD", "KAFKA_WORKER_PASSWORD", "KAFKA_INGEST_PASSWORD", "KAFKA_CAD_PASSWORD",
           "POSTGRES_SUPERUSER_PASSWORD", "CRISIS_DB_OWNER_PASSWORD", "CRISIS_DB_WORKER_PASSWORD",
           "CRISIS_DB_REPORTS_PASSWORD", "CRISIS_DB_AUDITOR_PASSWORD", "CRISIS_DB_RETENTION_PASSWORD",
           "CRISIS_PSEUDONYM_KEY", "CRISIS_INGEST_TOKENS", "GRAFANA_ADMIN_PASSWORD"}
# Services built from our image, and the variables the official images and our scripts read instead.
OUR_IMAGE = "crisis-pipeline:local"
VARIABLE = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's variable substitution: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``."""
    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if environ.get(name):
            return environ[name]
        if operator == "?":
            raise KeyError(f"{name}: {argument}")
        return argument if operator == "-" else ""
    return VARIABLE.sub(value, text)


def compose(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml as Compose reads it, every required secret set to a test value."""
    environ = environ if environ is not None else {name: f"test-{name.lower()}" for name in SECRETS}
    loaded = yaml.safe_load(interpolate(COMPOSE.read_text(), environ))
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def _env_names(source: Path) -> set[str]:
    """The environment variables a settings module reads."""
    return set(re.findall(r'(?:_env\(|environ\.get\(|environ\[)\s*"([A-Z][A-Z0-9_]+)"', source.read_text()))


def _script_env_names(script: Path) -> set[str]:
    return set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", script.read_text()))


def test_compose_file_is_valid_under_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.validate(compose(), schema, cls=jsonschema.Draft7Validator)
    assert set(services()) == SERVICES


def test_compose_requires_every_secret_and_hard_codes_none() -> None:
    text = COMPOSE.read_text()
    required = {match.group(1) for match in VARIABLE.finditer(text) if match.group(2) == "?"}
    assert required == SECRETS
    for secret in SECRETS:  # Compose refuses to start without it
        with pytest.raises(KeyError, match=secret):
            compose({name: "x" for name in SECRETS - {secret}})
    assert "crisis:crisis" not in text and "PLAINTEXT" not in text
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|_KEY$|TOKENS", key) and value and not str(value).startswith("/"):
                assert str(value).startswith("test-") or "${" in str(value), f"{name}: {key} is hard-coded"


def test_compose_publishes_nothing_beyond_loopback() -> None:
    published = {name: service["ports"] for name, service in services().items() if service.get("ports")}
    assert published, "the stack publishes Kafka, the ingest service, Prometheus and Grafana"
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the loopback"
    for private in ("postgres", "worker", "node-exporter", "kafka-access", "migrate"):
        assert "ports" not in services()[private], f"{private} is for the compose network only"


def test_compose_runs_three_kraft_nodes_from_the_official_image_with_our_start_script() -> None:
    stack = services()
    for number, name in enumerate(KAFKA_NODES, start=1):
        node = stack[name]
        assert node["image"] == "apache/kafka:4.0.1"
        assert node["entrypoint"] == ["/bin/bash", "/opt/crisis/start-broker.sh"]
        environment = node["environment"]
        assert str(environment["KAFKA_NODE_ID"]) == str(number)
        assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        assert set(environment) <= _script_env_names(START_BROKER)
        assert f"kafka-{number}-data:/var/lib/kafka/data" in node["volumes"]
        assert "./deploy/tls/out:/etc/crisis/tls:ro" in node["volumes"]
        assert node["ports"] == [f"127.0.0.1:{9093 + number}:9094"]
        assert str(environment["KAFKA_HOST_PORT"]) == str(9093 + number)
        health = node["healthcheck"]["test"]
        assert health[health.index("--bootstrap-server") + 1] == f"{name}:9092" and "--command-config" in health
    script = START_BROKER.read_text()
    for key in REQUIRED_KAFKA_SETTINGS:
        assert re.search(rf"^{re.escape(key)}=", script, re.MULTILINE), f"start-broker.sh does not set {key}"
    for line in ("replicas=${KAFKA_REPLICATION_FACTOR:-3}", "min_insync=${KAFKA_MIN_INSYNC_REPLICAS:-2}",
                 "default.replication.factor=$replicas", "min.insync.replicas=$min_insync",
                 "offsets.topic.replication.factor=$replicas", "transaction.state.log.min.isr=$min_insync",
                 "unclean.leader.election.enable=false",
                 "listener.security.protocol.map=INTERNAL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:SSL",
                 "listener.name.controller.ssl.client.auth=required", "auto.create.topics.enable=false",
                 "allow.everyone.if.no.acl.found=false"):
        assert line in script, line


def test_compose_access_job_grants_our_topics_before_any_client_starts() -> None:
    stack = services()
    access = stack["kafka-access"]
    assert access["entrypoint"] == ["/bin/bash", "/opt/crisis/access.sh"]
    required = set(re.findall(r"\$\{(\w+):\?\}", ACCESS.read_text()))
    assert required and required <= set(access["environment"]), "access.sh's required variables"
    assert set(access["environment"]) <= _script_env_names(ACCESS)
    assert {name: dep["condition"] for name, dep in access["depends_on"].items()} == dict.fromkeys(
        KAFKA_NODES, "service_healthy")
    for client in ("worker", "ingest"):
        assert stack[client]["depends_on"]["kafka-access"]["condition"] == "service_completed_successfully"
    # The topic names access.sh grants are ours (it cannot import streams/topics.py).
    script = ACCESS.read_text()
    named = set(re.findall(r'"\$\{prefix\}([\w.]+)"', script))
    assert named == set(topics.ALL_TOPICS)
    partner_line = re.search(r"partner_topics=\((.*?)\)", script, re.DOTALL)
    assert partner_line
    assert set(re.findall(r"\$\{prefix\}([\w.]+)", partner_line.group(1))) == set(topics.PARTNER_TOPICS)
    assert not set(topics.PERSONAL_DATA_TOPICS) & set(topics.PARTNER_TOPICS)


def _known_crisis_variables() -> set[str]:
    return _env_names(ROOT / "streams" / "config.py") | _env_names(ROOT / "crisis" / "ingest" / "config.py")


def test_our_services_set_only_variables_our_settings_read() -> None:
    known = _known_crisis_variables()
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP", "CRISIS_INGEST_PORT"} <= known
    for name, service in services().items():
        if service.get("image") == OUR_IMAGE:
            unknown = set(service.get("environment", {})) - known
            assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


def _database_user(service: dict[str, Any]) -> str:
    url = service["environment"]["DATABASE_URL"]
    assert "sslmode=verify-full" in url and "sslrootcert=/etc/crisis/tls/ca.crt" in url
    match = re.match(r"postgresql://(\w+):", url)
    assert match
    return match.group(1)


def test_compose_each_job_logs_into_postgres_as_its_least_privilege_role() -> None:
    stack = services()
    logins = dict(re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD :'(\w+)'", ROLES.read_text()))
    expected = {"migrate": "crisis_owner", "worker": "crisis_app", "report": "crisis_reports",
                "purge": "crisis_purge"}
    for name, user in expected.items():
        assert _database_user(stack[name]) == user and user in logins
        assert "./deploy/tls/out/ca.crt:/etc/crisis/tls/ca.crt:ro" in stack[name]["volumes"]
        assert stack[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert stack["migrate"]["command"] == ["crisis", "migrate"]
    assert stack["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for job in ("report", "purge"):
        assert stack[job]["profiles"] == ["jobs"], "one-shot jobs start only when run"
    postgres = stack["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "./deploy/postgres/init:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]


def _python_probe(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], "the image has Python, not curl"
    return str(test[3])


def test_compose_workers_scale_out_in_one_group_and_prometheus_finds_each() -> None:
    stack = services()
    worker = stack["worker"]
    environment = worker["environment"]
    assert worker["deploy"]["replicas"] >= 2, "a second worker takes over a stopped one's partitions"
    assert "CRISIS_APP_ID" not in environment, "one consumer group for every replica"
    assert "container_name" not in worker and "ports" not in worker, "replicas cannot share a name or a port"
    port = int(environment["CRISIS_METRICS_PORT"])
    assert worker["expose"] == [str(port)]
    assert f"http://127.0.0.1:{port}/readyz" in _python_probe(worker)
    assert environment["KAFKA_BOOTSTRAP"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    assert environment["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert environment["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert environment["KAFKA_SASL_USERNAME"] == "crisis-worker"
    assert str(environment["CRISIS_REPLICATION_FACTOR"]) == "3"
    assert str(environment["CRISIS_MIN_INSYNC_REPLICAS"]) == "2"
    assert int(str(environment["CRISIS_PARTITIONS"])) >= worker["deploy"]["replicas"]
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert jobs["crisis-worker"]["dns_sd_configs"] == [
        {"names": ["worker"], "type": "A", "port": port, "refresh_interval": "15s"}]
    ingest_port = stack["ingest"]["environment"]["CRISIS_INGEST_METRICS_PORT"]
    assert jobs["crisis-ingest"]["static_configs"] == [{"targets": [f"ingest:{ingest_port}"]}]
    assert jobs["crisis-report"]["static_configs"] == [{"targets": ["node-exporter:9100"]}]
    assert set(stack["prometheus"]["depends_on"]) == {"worker", "ingest", "node-exporter"}


def test_compose_ingest_serves_https_with_its_own_kafka_user() -> None:
    stack = services()
    ingest = stack["ingest"]
    environment = ingest["environment"]
    port, metrics_port = int(environment["CRISIS_INGEST_PORT"]), int(environment["CRISIS_INGEST_METRICS_PORT"])
    assert ingest["ports"] == [f"127.0.0.1:{port}:{port}"] and ingest["expose"] == [str(metrics_port)]
    assert f"https://127.0.0.1:{port}/readyz" in _python_probe(ingest)
    # make-certs.sh writes NAME.crt and NAME.key; the service reads them from the mounted folder.
    assert environment["CRISIS_INGEST_TLS_CERT"] == "/etc/crisis/tls/ingest.crt"
    assert environment["CRISIS_INGEST_TLS_KEY"] == "/etc/crisis/tls/ingest.key"
    assert "./deploy/tls/out:/etc/crisis/tls:ro" in ingest["volumes"]
    assert "ingest DNS:ingest" in COMPOSE.read_text(), "the make-certs line in the header makes its certificate"
    assert environment["KAFKA_SASL_USERNAME"] == "crisis-ingest"
    assert environment["KAFKA_SASL_PASSWORD"] == "test-kafka_ingest_password"
    assert Settings().metrics_port != metrics_port, "the worker and the ingest service must not share a port"


def test_compose_report_metrics_reach_prometheus_through_node_exporter() -> None:
    stack = services()
    report = stack["report"]
    metrics_file = Path(report["environment"]["CRISIS_REPORT_METRICS_FILE"])
    assert f"report-metrics:{metrics_file.parent}" in report["volumes"]
    exporter = stack["node-exporter"]
    assert "report-metrics:/textfile:ro" in exporter["volumes"]
    assert "--collector.textfile.directory=/textfile" in exporter["command"]
    # The named volume takes the image directory's owner, so the unprivileged report user can write.
    assert re.search(rf"mkdir -p {metrics_file.parent} && chown crisis {metrics_file.parent}", DOCKERFILE.read_text())
    assert "report-metrics" in compose()["volumes"]


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


@pytest.mark.parametrize("partners", ["*:secret", "cad:secret", "crisis-worker:secret", "broker:secret",
                                      "county-mh:", "county mh:secret", "-county:secret"])
def test_access_script_refuses_a_partner_that_is_not_a_plain_name_of_its_own(partners: str, tmp_path: Path) -> None:
    """``User:*`` is every user in Kafka's ACLs, and a partner named like one of ours would share its grants:
    the job stops before it changes anything (no Kafka tool is ever called here)."""
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP": "kafka-1:9092", "KAFKA_BROKER_PASSWORD": "x",
           "KAFKA_WORKER_PASSWORD": "x", "KAFKA_INGEST_PASSWORD": "x", "KAFKA_CAD_PASSWORD": "x",
           "KAFKA_HOME": str(tmp_path / "no-kafka"), "KAFKA_PARTNERS": f"county-a:secret {partners}"}
    result = subprocess.run(["bash", str(ACCESS)], env=env, capture_output=True, text=True, timeout=30, check=False,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "is not a partner user" in result.stderr
