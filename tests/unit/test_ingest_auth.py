"""Center tokens for `crisis ingest`: hashed at rest, from a file or the environment, each to its center."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crisis.cli import app
from crisis.ingest.auth import TokenConfigError, hash_token, load_tokens, new_token

runner = CliRunner()


def test_a_token_finds_its_center_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    stl, hou, hou_next = new_token(), new_token(), new_token()
    file = tmp_path / "tokens.toml"
    file.write_text(f'[centers]\n"stl-911" = "{hash_token(stl)}"\n'
                    f'"hou-911" = ["{hash_token(hou)}", "{hash_token(hou_next)}"]\n', encoding="utf-8")

    store = load_tokens(str(file), None)

    assert store.center_for(stl) == "stl-911"
    assert store.center_for(hou) == "hou-911" and store.center_for(hou_next) == "hou-911"  # rotation
    assert store.center_for(new_token()) is None
    assert store.center_for("") is None
    assert stl not in file.read_text(encoding="utf-8")
    assert store.centers == ("hou-911", "stl-911")


def test_file_and_environment_combine() -> None:
    token = new_token()
    store = load_tokens(None, f" a-911={hash_token(token)} , b-911={hash_token(new_token())},")
    assert store.center_for(token) == "a-911"
    assert store.centers == ("a-911", "b-911")


def test_tokens_are_long_and_random() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(token) >= 40 and token.startswith("cri_") for token in tokens)
    assert hash_token("x") == "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        pytest.param("stl-911=abc", "expected 'sha256:<64 hex digits>'", id="plain-token-not-a-hash"),
        pytest.param("stl-911", "is not <center_id>=sha256:<hex>", id="no-equals"),
        pytest.param(f"a:b={hash_token('x')}", "no ':'", id="colon-in-center"),
    ],
)
def test_bad_environment_entries_are_refused_naming_them(env: str, problem: str) -> None:
    with pytest.raises(TokenConfigError, match=problem):
        load_tokens(None, env)


def test_a_bad_token_file_is_refused_naming_it(tmp_path: Path) -> None:
    file = tmp_path / "tokens.toml"
    file.write_text('centers = 3\n', encoding="utf-8")
    with pytest.raises(TokenConfigError, match=r"tokens\.toml: expected only a"):
        load_tokens(str(file), None)
    with pytest.raises(TokenConfigError, match="not found"):
        load_tokens(str(tmp_path / "missing.toml"), None)


def test_ingest_token_command_prints_a_token_and_the_line_to_store() -> None:
    result = runner.invoke(app, ["ingest-token", "stl-911"])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["hash"] == hash_token(printed["token"])
    assert f'"stl-911" = "{printed["hash"]}"' in result.stderr
    assert load_tokens(None, f"stl-911={printed['hash']}").center_for(printed["token"]) == "stl-911"
