"""`crisis worker` refuses to start with a clear message, before Faust, when it cannot work."""

from __future__ import annotations

from typer.testing import CliRunner

from crisis.cli import app

runner = CliRunner()


def test_no_pseudonym_key_no_worker(monkeypatch):
    monkeypatch.delenv("CRISIS_PSEUDONYM_KEY", raising=False)
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "CRISIS_PSEUDONYM_KEY is not set" in result.stderr


def test_a_missing_policy_file_stops_the_worker_with_its_name(monkeypatch):
    monkeypatch.setenv("CRISIS_PSEUDONYM_KEY", "test-key")
    monkeypatch.setenv("CRISIS_POLICY", "/nowhere/policy.toml")
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "policy file not found: /nowhere/policy.toml" in result.stderr


def test_an_unreachable_database_stops_the_worker_with_a_clear_error(monkeypatch):
    monkeypatch.setenv("CRISIS_PSEUDONYM_KEY", "test-key")
    monkeypatch.delenv("CRISIS_POLICY", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "cannot migrate the database at $DATABASE_URL" in result.stderr
