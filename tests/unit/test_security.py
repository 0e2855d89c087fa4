"""Kafka client security and topic settings from the environment: one helper for every client."""

from __future__ import annotations

import ssl

import pytest
from faust.auth import SASLCredentials, SSLCredentials

from streams.config import Settings
from streams.security import KafkaSecurityError, check, faust_options, kafka_client_options
from streams.topics import CALLS, DEADLETTER, TRIAGE, topic_configs


def test_plaintext_by_default_with_no_credentials() -> None:
    settings = Settings()
    assert kafka_client_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_options(settings) == {}


def test_sasl_ssl_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "scram-sha-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "crisis-worker")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    settings = Settings.from_env()
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("crisis-worker", "s3cret")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    credentials = faust_options(settings)["broker_credentials"]
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-256"
    # The worker hands its settings to child processes through the environment: nothing is lost.
    assert Settings.from_env() == settings
    for key, value in settings.as_env().items():
        monkeypatch.setenv(key, value)
    assert Settings.from_env() == settings


def test_tls_only_gives_faust_ssl_credentials() -> None:
    settings = Settings(kafka_security_protocol="SSL")
    assert isinstance(faust_options(settings)["broker_credentials"], SSLCredentials)
    assert "sasl_mechanism" not in kafka_client_options(settings)


@pytest.mark.parametrize(("fields", "complaint"), [
    ({"kafka_security_protocol": "SASL"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
    ({"kafka_security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI", "kafka_sasl_username": "u",
      "kafka_sasl_password": "p"}, "KAFKA_SASL_MECHANISM must be one of"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u",
      "kafka_sasl_password": "p"}, "clear text"),
    ({"kafka_ssl_cafile": "/ca.pem"}, "does not use TLS"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/c.pem"}, "needs both"),
])
def test_contradictions_are_refused_naming_the_variable(fields: dict[str, str], complaint: str) -> None:
    with pytest.raises(KafkaSecurityError, match=complaint):
        check(Settings(**fields))  # type: ignore[arg-type]


def test_secrets_never_appear_in_the_settings_repr() -> None:
    settings = Settings(kafka_sasl_password="kafka-secret", pseudonym_key="pseudonym-secret")
    assert "kafka-secret" not in repr(settings) and "pseudonym-secret" not in repr(settings)


def test_topics_take_replication_and_personal_data_retention_from_settings() -> None:
    settings = Settings(replication_factor=3, min_insync_replicas=2, personal_topic_retention_hours=72)
    assert topic_configs(settings, TRIAGE) == {"min.insync.replicas": "2"}
    for name in (CALLS, DEADLETTER):
        assert topic_configs(settings, name) == {"min.insync.replicas": "2", "retention.ms": str(72 * 3_600_000)}
    assert topic_configs(Settings(), CALLS) == {"min.insync.replicas": "1"}  # the broker's retention


def test_a_worker_with_contradictory_kafka_settings_stops_before_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from crisis.cli import app

    monkeypatch.setenv("CRISIS_PSEUDONYM_KEY", "test-key")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("KAFKA_SASL_USERNAME", raising=False)
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "needs KAFKA_SASL_USERNAME" in result.stderr


def test_idempotent_producers_unless_the_broker_lacks_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().kafka_idempotent_producer
    monkeypatch.setenv("KAFKA_IDEMPOTENT_PRODUCER", "false")
    settings = Settings.from_env()
    assert not settings.kafka_idempotent_producer
    assert settings.as_env()["KAFKA_IDEMPOTENT_PRODUCER"] == "false"
