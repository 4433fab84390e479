"""The Grafana dashboard and the alert rules only use series the controller exports.

Names come from the controller's own registry (``Telemetry``), expanded the way Prometheus
sees them (a counter ``x`` is scraped as ``x_total``, a histogram as ``x_bucket``, ``x_sum``
and ``x_count``). A renamed metric then fails here instead of leaving an empty panel or an
alert that can never fire.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from canary.service.telemetry import Telemetry
from tests.unit.deploy.promql_names import metric_names, template_query_names
from tests.unit.service.test_controller import World

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy/grafana/canary-dashboard.json"
ALERTS = ROOT / "deploy/prometheus/canary-alerts.yaml"

# Series Prometheus makes itself for every target, not exported by anyone.
PROMETHEUS_OWN = {"up"}

_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def exported_names(telemetry: Telemetry) -> set[str]:
    names = set()
    for family in telemetry.registry.collect():
        for suffix in _SUFFIXES[family.type]:
            names.add(family.name + suffix)
    return names


def dashboard_queries(*, annotations: bool = True) -> list[str]:
    """Every panel query, and (unless told not to) every annotation query."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    if annotations:
        exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    return exprs


def dashboard_template_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    out = []
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            out.append(query["query"] if isinstance(query, dict) else query)
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def used_names() -> dict[str, set[str]]:
    """Metric name → where it is used."""
    used: dict[str, set[str]] = {}
    for expr in dashboard_queries():
        for name in metric_names(expr):
            used.setdefault(name, set()).add("dashboard")
    for query in dashboard_template_queries():
        for name in template_query_names(query):
            used.setdefault(name, set()).add("dashboard variable")
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    return used


def test_every_name_used_is_exported():
    exported = exported_names(Telemetry())
    unknown = {name: where for name, where in used_names().items() if name not in exported}
    assert set(unknown) <= PROMETHEUS_OWN, f"not exported by the controller: {unknown}"


def test_the_dashboard_covers_what_operators_watch():
    names = {n for expr in dashboard_queries() for n in metric_names(expr)}
    for needed in [
        "canary_rollouts",  # rollouts by phase
        "canary_canary_weight_percent",  # canary weight per rollout
        "canary_e_value",  # evidence per metric ...
        "canary_e_value_threshold",  # ... against 1/alpha
        "canary_tick_duration_seconds_bucket",  # tick duration quantiles
        "canary_errors_total",  # errors by kind
        "canary_leader",
    ]:
        assert needed in names, needed


def test_the_alerts_cover_the_failures_that_matter():
    alerts = {rule["alert"]: metric_names(rule["expr"]) for rule in alert_rules()}
    assert "canary_canary_weight_percent" in alerts["CanaryRolloutStuck"]
    assert "canary_ticks_total" in alerts["CanaryTicksStopped"]
    assert "canary_measurements_total" in alerts["CanaryMetricQueriesFailing"]
    assert "canary_transitions_total" in alerts["CanaryRolledBack"]
    assert alerts["CanaryControllerDown"] == {"up"}
    assert "canary_leader" in alerts["CanaryNoLeader"]
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


@pytest.fixture
def ticked_world(tmp_path):
    """A controller that ran a rollout for a few minutes, as the daemon would."""
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = world.start()
    for _ in range(12):
        world.controller.tick(rollout_id)
        world.clock.advance(15)
    return world


def test_every_series_used_has_samples_once_a_rollout_runs(ticked_world):
    """Not only registered: each series the dashboard and alerts read has a value."""
    text = generate_latest(ticked_world.ctx.telemetry.registry).decode()
    sampled = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    missing = sorted(set(used_names()) - sampled - PROMETHEUS_OWN)
    assert missing == []


def test_dashboard_is_a_well_formed_grafana_dashboard():
    board = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel["description"], panel["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert "$model" in " ".join(dashboard_queries())
