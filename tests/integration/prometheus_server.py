"""A real Prometheus server (Debian's ``prometheus`` package, installed by ``make deps``) for the tests:
a given configuration, a free loopback port, a private data folder, and its HTTP API."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crisis.services import free_port
from tests.conftest import wait_until


class PrometheusQueryError(AssertionError):
    """Prometheus refused a query (a PromQL parse or evaluation error); the message quotes the query."""


class PrometheusServer:
    """One running server; ``query`` and ``rules`` call its HTTP API (``/api/v1``)."""

    def __init__(self, url: str, session: aiohttp.ClientSession, log_path: Path) -> None:
        self.url = url
        self.session = session
        self.log_path = log_path

    async def _get(self, path: str, **params: str) -> Any:
        async with self.session.get(self.url + path, params=params) as response:
            body = await response.json(content_type=None)
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at the current time: the series of the resulting vector, each ``{"metric", "value"}``."""
        data = await self._get("/api/v1/query", query=expr)
        if data["resultType"] != "vector":
            raise PrometheusQueryError(f"{expr!r} gave a {data['resultType']}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    async def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule, each with its ``group``: ``name``, ``query``, ``health``, ``lastError``, ``state``..."""
        data = await self._get("/api/v1/rules")
        return [{**rule, "group": group["name"]} for group in data["groups"] for rule in group["rules"]]

    async def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, each with ``labels`` (job, instance) and ``health``."""
        data = await self._get("/api/v1/targets", state="active")
        targets: list[dict[str, Any]] = data["activeTargets"]
        return targets

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def _launch(config: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Write the configuration into a fresh folder and start ``prometheus`` on a free loopback port (it starts in
    the background: Popen returns at once)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run `make deps` or `apt-get install prometheus` (Debian)")
    workdir = Path(tempfile.mkdtemp(prefix="crisis-prometheus-"))
    config_path = workdir / "prometheus.yml"
    config_path.write_text(config)
    port = free_port()
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.tsdb.path={workdir / 'data'}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return process, port, workdir


def _stop(process: subprocess.Popen[bytes], workdir: Path) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_prometheus(config: str) -> AsyncIterator[PrometheusServer]:
    """Start ``prometheus`` with this configuration (YAML text; paths in it must be absolute), wait until it is
    ready, and stop it (and delete its data) afterwards."""
    process, port, workdir = _launch(config)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    server = PrometheusServer(f"http://127.0.0.1:{port}", session, workdir / "prometheus.log")
    try:
        async def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited with code {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(server.url + "/-/ready") as response:
                    return response.status == 200
            return False

        await wait_until(ready, 30)
        yield server
    finally:
        await session.close()
        _stop(process, workdir)
