"""The official AsyncAPI parser (``@asyncapi/parser``, npm) run with Node, for the tests.

The package is pinned in ``deploy/asyncapi/package.json`` and its whole tree in ``package-lock.json``;
``npm ci`` installs exactly that into a cache folder once (``$CRISIS_NODE_CACHE``, default
``.cache/node``), as ``crisis.services.fetch_kafka_jars`` does for Kafka's jars, and again only when the
lock file changes. ``deploy/asyncapi/parse.cjs`` prints the parser's diagnostics and its reading of each
document as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from crisis.services import REPO_ROOT, cache_lock

PACKAGE_DIR = REPO_ROOT / "deploy" / "asyncapi"
PARSE_SCRIPT = PACKAGE_DIR / "parse.cjs"
NODE_CACHE = Path(os.environ.get("CRISIS_NODE_CACHE", REPO_ROOT / ".cache" / "node"))


class ParserUnavailable(RuntimeError):
    """Node or npm is missing, or npm could not install the parser; the message says which and how to fix it."""


def pinned_version() -> str:
    """The exact ``@asyncapi/parser`` version ``package.json`` pins."""
    return str(json.loads((PACKAGE_DIR / "package.json").read_text())["dependencies"]["@asyncapi/parser"])


def install_parser() -> Path:
    """``npm ci`` the locked parser into the cache folder (once per lock file); returns its ``node_modules``."""
    with cache_lock(NODE_CACHE):
        return _install_parser()


def _install_parser() -> Path:
    target = NODE_CACHE / "asyncapi"
    stamp = target / ".complete"
    lock = (PACKAGE_DIR / "package-lock.json").read_text()
    if stamp.exists() and stamp.read_text() == lock:
        return target / "node_modules"
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise ParserUnavailable(f"{tool} is not installed: run `make deps` or `apt-get install nodejs npm`")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(PACKAGE_DIR / name, target / name)
    # ci: exactly the lock file's tree, checked against its integrity hashes; no install scripts are needed.
    result = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                            cwd=target, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise ParserUnavailable(f"npm could not install @asyncapi/parser:\n{result.stdout[-3000:]}\n"
                                f"{result.stderr[-3000:]}")
    stamp.write_text(lock)  # last: an interrupted install is redone
    return target / "node_modules"


def parse_documents(*paths: Path) -> dict[str, Any]:
    """Run the official parser on each document: ``{"parser": version, "documents": [one result per path]}``.

    Each result has ``parsed`` (the parser produced a document), ``diagnostics`` (``severity`` error, warning,
    information or hint, ``code``, ``message``, ``path``), and the parser's reading: ``channels`` (address,
    messages with their payload's property names and required ones) and ``operations``.
    """
    node_modules = install_parser()
    result = subprocess.run(["node", str(PARSE_SCRIPT), *map(str, paths)],
                            env={**os.environ, "NODE_PATH": str(node_modules)},
                            capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise ParserUnavailable(f"parse.cjs failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def format_diagnostics(diagnostics: list[dict[str, Any]]) -> str:
    """One line per diagnostic, for a test failure message."""
    return "\n".join(f"{d['severity']}: {d['code']} at {d['path'] or '(document)'}: {d['message']}"
                     for d in diagnostics)
