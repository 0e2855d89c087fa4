"""The Grafana dashboard and its provisioning: queries only what the worker exposes, wired as compose mounts it.

No Grafana is needed: the dashboard is checked as JSON, its PromQL with `promtool check rules`, the
provisioning files and the compose service as text (no YAML parser among our dependencies).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from tests.unit.test_deploy_files import ROOT, _promtool, exposed_metric_names, metric_families, services

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "crisis-pipeline.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "crisis.yml"
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows included, also those nested in a collapsed row."""
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that show data; rows only group them."""
    return [panel for panel in _panels(dashboard) if panel["type"] != "row"]


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in _query_panels(dashboard) for target in panel["targets"]]


def _strip_suffix(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _mounts(service: str) -> dict[str, tuple[str, str]]:
    """Bind mounts of a compose service: container path -> (host path relative to the repository, mode)."""
    mounts = [volume.split(":") for volume in services()[service]["volumes"] if volume.startswith("./")]
    return {parts[1]: (parts[0].removeprefix("./"), parts[2] if len(parts) > 2 else "") for parts in mounts}


def test_dashboard_identity() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "crisis-pipeline"
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"]
    assert [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"], "no rows"


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    panels = _panels(_dashboard())
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(panel_id, int) for panel_id in ids), ids
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    taken: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


def test_every_panel_is_titled_described_and_queries_the_provisioned_prometheus() -> None:
    panels = _query_panels(_dashboard())
    assert panels
    for panel in panels:
        title = panel.get("title", "").strip()
        assert title, f"panel {panel['id']} has no title"
        assert len(panel.get("description", "").strip()) >= 40, f"{title!r} needs a description of what is bad"
        assert panel["datasource"]["uid"] == "prometheus", title
        assert panel["targets"], f"{title!r} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", title
            assert target["expr"].strip(), title


def test_dashboard_uses_only_metrics_the_worker_exposes() -> None:
    used = {name for expr in _exprs(_dashboard()) for name in re.findall(r"\bcrisis_[a-z_]+", expr)}
    assert used, "no crisis_* metric in the dashboard"
    families = {family.name for family in metric_families()}
    undefined = {_strip_suffix(name) for name in used} - families
    assert not undefined, f"the dashboard uses metrics PipelineMetrics does not define: {sorted(undefined)}"
    wrong_suffix = used - exposed_metric_names()
    assert not wrong_suffix, f"suffix does not match the metric's type: {sorted(wrong_suffix)}"


def test_dashboard_shows_every_metric_the_worker_exposes() -> None:
    used = {_strip_suffix(name) for expr in _exprs(_dashboard()) for name in re.findall(r"\bcrisis_[a-z_]+", expr)}
    families = {family.name for family in metric_families()}
    assert families <= used, f"metrics with no panel: {sorted(families - used)}"


def test_latency_panels_are_in_seconds_and_stats_have_thresholds() -> None:
    for panel in _query_panels(_dashboard()):
        defaults = panel["fieldConfig"]["defaults"]
        if any("_seconds_bucket" in target["expr"] for target in panel["targets"]):
            assert "histogram_quantile(" in panel["targets"][0]["expr"], panel["title"]
            assert defaults["unit"] == "s", panel["title"]
        if panel["type"] == "stat":
            assert defaults["thresholds"]["steps"], panel["title"]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query as a recording rule: `promtool check rules` parses it (JSON is YAML)."""
    exprs = _exprs(_dashboard())
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout, result.stdout


def test_datasource_is_the_compose_prometheus() -> None:
    text = DATASOURCES.read_text()
    assert re.search(r"^\s+type: prometheus$", text, re.MULTILINE)
    assert re.search(r"^\s+uid: prometheus$", text, re.MULTILINE)
    assert re.search(r"^\s+url: http://prometheus:9090$", text, re.MULTILINE)
    assert services()["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]  # loopback only


def test_grafana_service_mounts_what_the_provisioning_files_reference() -> None:
    grafana = services()["grafana"]
    assert grafana["image"] == "grafana/grafana:11.3.0"
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]  # loopback only
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert grafana["depends_on"] == ["prometheus"]

    mounts = _mounts("grafana")
    assert all(mode == "ro" for _, mode in mounts.values()), f"grafana mounts must be read-only: {mounts}"
    assert mounts["/etc/grafana/provisioning/datasources"][0] == DATASOURCES.parent.relative_to(ROOT).as_posix()
    assert mounts["/etc/grafana/provisioning/dashboards"][0] == (
        DASHBOARD_PROVIDERS.parent.relative_to(ROOT).as_posix()
    )

    provider_path = re.search(r"^\s+path: (\S+)$", DASHBOARD_PROVIDERS.read_text(), re.MULTILINE)
    assert provider_path, "no dashboards path in the provider"
    assert re.search(r"^\s+type: file$", DASHBOARD_PROVIDERS.read_text(), re.MULTILINE)
    assert provider_path.group(1) in mounts, f"compose does not mount {provider_path.group(1)}"
    host_folder = ROOT / mounts[provider_path.group(1)][0]
    assert DASHBOARD.parent == host_folder, f"the dashboard is not in {host_folder}"

    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home, "no home dashboard"
    home_path = PurePosixPath(home)
    assert str(home_path.parent) == provider_path.group(1) and home_path.name == DASHBOARD.name
