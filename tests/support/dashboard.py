"""The PromQL that docker/ ships: the Grafana dashboard's panels and the Prometheus alerts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

DOCKER = Path(__file__).resolve().parent.parent.parent / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "screenvisit.json"
ALERTS = DOCKER / "alerts.yml"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of every panel, in the dashboard's order."""
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]
    return rules


def series_asked() -> set[str]:
    """The screenvisit series (sample names, e.g. `..._total`, `..._bucket`) that the dashboard
    and the alerts query."""
    queries = [expr for _title, expr in panel_queries()] + [r["expr"] for r in alert_rules()]
    return {name for q in queries for name in re.findall(r"screenvisit_[a-z_]+", q)}
