"""docker/compose.yaml as Docker Compose v2 reads it (`docker compose config`: no engine runs
here; docker/install-compose.sh installs the plugin, .ci/run calls it), and the monitoring it ships:
Prometheus scrapes every node's metrics port, and the dashboard and alerts ask only for series
the server serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server import appkeys
from tests.support.dashboard import (
    ALERTS,
    DOCKER,
    alert_rules,
    dashboard,
    panel_queries,
    series_asked,
)

PLUGIN = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins"


def docker_compose() -> list[str]:
    """`docker compose`, or the plugin on its own where there is no docker CLI."""
    plugin = PLUGIN / "docker-compose"
    assert plugin.exists(), "Docker Compose v2 is missing: run docker/install-compose.sh"
    docker = shutil.which("docker")
    return [docker, "compose"] if docker else [str(plugin)]


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config`, as JSON."""
    args = ["-f", str(DOCKER / "compose.yaml"), "--env-file", str(env_file), "config"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENVISIT_")}
    return subprocess.run(
        [*docker_compose(), *args, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def resolved() -> dict[str, Any]:
    result = compose_config(DOCKER / "env.example")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def test_compose_config_accepts_the_example_settings_with_monitoring() -> None:
    services = resolved()["services"]
    assert {"node-a", "node-b", "prometheus", "grafana"} <= set(services)
    for name in ("prometheus", "grafana"):
        assert services[name]["network_mode"] == "host"
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    for node in ("node-a", "node-b"):
        assert services[node]["environment"]["SCREENVISIT_LOG_FORMAT"] == "json"


def test_compose_config_refuses_a_missing_grafana_password(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    lines = (DOCKER / "env.example").read_text().splitlines()
    env.write_text("\n".join(ln for ln in lines if not ln.startswith("GRAFANA_ADMIN_PASSWORD")))
    result = compose_config(env)
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_prometheus_scrapes_every_node_metrics_port() -> None:
    services = resolved()["services"]
    ports = {
        f"127.0.0.1:{s['environment']['SCREENVISIT_METRICS_PORT']}"
        for name, s in services.items()
        if name.startswith("node-")
    }
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert {t for c in job["static_configs"] for t in c["targets"]} == ports
    mounted = {v["target"] for v in services["prometheus"]["volumes"]}
    assert set(prometheus["rule_files"]) <= mounted


async def test_dashboard_and_alerts_ask_only_for_served_series(
    client: TestClient[web.Request, web.Application],
) -> None:
    text = client.app[appkeys.METRICS].render().decode()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    served = {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes.get(family.type, ("",))
    }
    asked = series_asked()
    assert asked, "the dashboard queries screenvisit's series"
    assert asked <= served, asked - served
    datasource = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    uids = {p["datasource"]["uid"] for p in dashboard()["panels"]}
    assert uids == {datasource["datasources"][0]["uid"]}


def test_dashboard_and_alerts_are_promql_that_prometheus_parses(tmp_path: Path) -> None:
    """Prometheus' own parser (`promtool check rules`, Debian's prometheus package) reads every
    panel's query, as a recording rule, and every alert, with its templates."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    recorded = [
        {"record": f"screenvisit_dashboard:panel_{n}", "expr": expr}
        for n, (_title, expr) in enumerate(panel_queries())
    ]
    panels = tmp_path / "panels.yml"
    panels.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": recorded}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(panels), str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(recorded)} rules found" in result.stdout
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout
