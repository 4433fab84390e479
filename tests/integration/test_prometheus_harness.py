"""The Prometheus fixture drives a real Prometheus: reloads take, queries answer, data arrives."""

from __future__ import annotations

import httpx
import pytest
import yaml

from tests.harness.model_server import ModelServerFactory
from tests.harness.prometheus import PrometheusServer, PromQLError

pytestmark = pytest.mark.integration


def running_jobs(prometheus: PrometheusServer) -> dict[str, list[str]]:
    """Jobs and targets of the config Prometheus runs now, read from its own API."""
    body = httpx.get(f"{prometheus.url}/api/v1/status/config", timeout=5).json()
    config = yaml.safe_load(body["data"]["yaml"])
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config.get("scrape_configs") or []
    }


def test_scraped_target_is_up_and_its_samples_are_queryable(
    prometheus: PrometheusServer,
    prometheus_job: str,
    model_server_factory: ModelServerFactory,
) -> None:
    server = model_server_factory(version="7")
    prometheus.scrape(prometheus_job, [server.target])
    prometheus.wait_targets_up(prometheus_job)
    [target] = prometheus.targets(prometheus_job)
    assert target["scrapeUrl"] == f"{server.url}/metrics"
    assert target["labels"]["instance"] == server.target
    assert prometheus.query_value(f'up{{job="{prometheus_job}"}}') == 1.0
    # The zero-initialised series of the model server are there before any request.
    result = prometheus.wait_for(
        f'model_requests_total{{job="{prometheus_job}"}}', lambda r: len(r) == 2
    )
    assert {(s["metric"]["version"], s["metric"]["code"]) for s in result} == {
        ("7", "200"),
        ("7", "500"),
    }


def test_scrape_replaces_and_removes_targets_in_the_running_config(
    prometheus: PrometheusServer, prometheus_job: str
) -> None:
    prometheus.scrape(prometheus_job, ["127.0.0.1:9"], interval="2s")
    assert running_jobs(prometheus)[prometheus_job] == ["127.0.0.1:9"]
    prometheus.scrape(prometheus_job, ["127.0.0.1:10", "127.0.0.1:11"])
    assert sorted(running_jobs(prometheus)[prometheus_job]) == ["127.0.0.1:10", "127.0.0.1:11"]
    prometheus.remove(prometheus_job)
    assert prometheus_job not in running_jobs(prometheus)


def test_a_refused_reload_is_an_error_and_the_old_config_keeps_running(
    prometheus: PrometheusServer, prometheus_job: str
) -> None:
    prometheus.scrape(prometheus_job, ["127.0.0.1:9"])
    good = prometheus.evaluation_interval
    prometheus.evaluation_interval = "not-a-duration"
    try:
        with pytest.raises(RuntimeError, match="reload failed"):
            prometheus.reload()
    finally:
        prometheus.evaluation_interval = good
    assert running_jobs(prometheus)[prometheus_job] == ["127.0.0.1:9"]
    prometheus.reload()


@pytest.mark.parametrize("target", ["10.1.2.3:80", "example.com:80", "127.0.0.1"])
def test_only_loopback_targets_are_accepted(prometheus: PrometheusServer, target: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1:PORT"):
        prometheus.scrape("never_configured", [target])
    assert "never_configured" not in running_jobs(prometheus)


def test_bad_promql_fails_at_once_with_the_reason(prometheus: PrometheusServer) -> None:
    with pytest.raises(PromQLError) as exc:
        prometheus.wait_for("sum(", lambda r: True, timeout=30)
    assert exc.value.error_type == "bad_data"


def test_query_returns_scalars_and_vectors(prometheus: PrometheusServer) -> None:
    assert prometheus.query_value("1 + 2") == 3.0
    assert prometheus.query_value("vector(4) + 1") == 5.0
    assert prometheus.query('up{job="no_such_job"}') == []
    assert prometheus.query_value('up{job="no_such_job"}') is None


def test_wait_for_gives_up_after_its_timeout(prometheus: PrometheusServer) -> None:
    with pytest.raises(TimeoutError, match="vector"):
        prometheus.wait_for("vector(1)", lambda r: False, timeout=0.3)
