"""The alert rules under promtool, and every dashboard query against a real Prometheus
scraping a real controller API.

``promtool check rules`` parses the rules as Prometheus would; ``promtool test rules`` runs
``deploy/prometheus/canary-alerts.test.yaml``, which feeds made-up series and says which
alerts fire when. The dashboard check starts a Prometheus of its own, scrapes the API of a
controller with a rolled-back and a progressing rollout, and requires every panel's query to
return data: a query that is valid but selects nothing would be an empty panel.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.proc import require_binary
from tests.harness.prometheus import PrometheusServer, start_prometheus
from tests.integration.deploy.world_api import ServedWorld, serve_world
from tests.unit.deploy.test_observability import (
    ALERTS,
    alert_rules,
    dashboard_queries,
    dashboard_template_queries,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ALERTS.parent,
    )


def test_promtool_accepts_the_rules():
    done = promtool("check", "rules", ALERTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_accepts_the_example_config_with_the_rules():
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def test_promtool_unit_tests_of_the_alerts_pass():
    done = promtool("test", "rules", "canary-alerts.test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.fixture(scope="module")
def scraped(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrometheusServer, ServedWorld]]:
    """One Prometheus of its own (no other test's series) scraping the controller's API."""
    tmp_path = tmp_path_factory.mktemp("scraped")
    with serve_world(tmp_path / "world") as served:
        prometheus = start_prometheus(tmp_path / "prometheus")
        try:
            prometheus.scrape("canary", [f"127.0.0.1:{served.port}"], interval="1s")
            prometheus.wait_targets_up("canary", timeout=30)
            # rate() needs two samples of a series.
            prometheus.wait_for("count_over_time(canary_leader[1m]) >= 2", bool, timeout=30)
            yield prometheus, served
        finally:
            prometheus.process.stop()


def concrete(expr: str, model: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would."""
    return expr.replace("$__rate_interval", "1m").replace("$model", model)


def test_every_dashboard_query_returns_data(scraped):
    prometheus, served = scraped
    model = served.world.store.get(served.progressing).rollout.model
    empty = []
    for expr in dashboard_queries(annotations=False):
        if not prometheus.query(concrete(expr, model)):
            empty.append(expr)
    assert empty == []
    for expr in dashboard_queries():  # annotations mark events: valid, possibly empty now
        prometheus.query(concrete(expr, model))
    for query in dashboard_template_queries():
        metric = query.removeprefix("label_values(").split(",")[0]
        values = httpx.get(
            f"{prometheus.url}/api/v1/label/model/values", params={"match[]": metric}
        ).json()["data"]
        assert model in values


def test_the_weight_and_threshold_series_are_the_store_s(scraped):
    prometheus, served = scraped
    rollout = served.world.store.get(served.progressing).rollout
    weight = prometheus.query_value(f'canary_canary_weight_percent{{rollout="{rollout.id}"}}')
    assert weight == rollout.canary_weight
    threshold = prometheus.query_value(f'canary_e_value_threshold{{rollout="{rollout.id}"}}')
    assert threshold == pytest.approx(20.0)
    # The finished rollout's series are gone: /metrics only carries active rollouts.
    assert prometheus.query(f'canary_e_value{{rollout="{served.rolled_back}"}}') == []


def test_alert_expressions_run_on_live_data(scraped):
    prometheus, _served = scraped
    for rule in alert_rules():
        prometheus.query(rule["expr"])  # raises PromQLError if Prometheus refuses it
