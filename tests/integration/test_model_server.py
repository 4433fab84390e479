"""The simulated model server and the load generator, as real processes under real Prometheus.

One fleet of four versions, each unlike the control in one way, is loaded once and scraped
by one job: Prometheus needs ~5 s to pick up a new scrape config, so the tests that read it
share that wait. Every expected rate below comes from a seeded server and is checked within
about four standard errors: an option that were ignored would land far outside.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from canary.sim.loadgen import LoadGenerator, LoadStats
from tests.harness.model_server import ModelServer, ModelServerFactory
from tests.harness.prometheus import PrometheusServer, Vector

pytestmark = pytest.mark.integration

JOB = "sim_fleet"
REQUESTS = 400  # per version
BATCH = 5  # records per request: 2000 predictions per version
MIX = {"a": 0.5, "b": 0.5}


def close_to(observed: float, expected: float, n: float, sds: float = 4.0) -> bool:
    return abs(observed - expected) <= sds * math.sqrt(expected * (1 - expected) / n)


@dataclass
class Fleet:
    servers: dict[str, ModelServer]  # by role
    load: dict[str, LoadStats]  # by role
    prometheus: PrometheusServer

    def version(self, role: str) -> str:
        return self.servers[role].version

    def value(self, promql: str) -> float:
        value = self.prometheus.query_value(promql)
        assert value is not None, promql
        return value

    def by_group(self, promql: str) -> dict[str, float]:
        return {s["metric"]["group"]: float(s["value"][1]) for s in self.prometheus.query(promql)}


@pytest.fixture(scope="module")
def fleet(
    prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    factory = ModelServerFactory(tmp_path_factory.mktemp("fleet"))
    base = {"latency_ms": 2.0, "jitter_ms": 1.0, "label_delay_s": 0.0}
    try:
        servers = {
            "control": factory(version="1", seed=1, **base),
            "errors": factory(version="2", seed=2, error_rate=0.2, **base),
            "tail": factory(version="3", seed=3, tail_prob=0.05, tail_ms=300.0, **base),
            "groups": factory(
                version="4",
                seed=4,
                group_positive_rate={"a": 0.6, "b": 0.15},
                group_accuracy={"a": 0.95, "b": 0.7},
                **base,
            ),
        }
        prometheus.scrape(JOB, [s.target for s in servers.values()])
        generators = {
            role: LoadGenerator(
                server.url,
                rps=None,
                groups=MIX,
                workers=8,
                batch=BATCH,
                max_requests=REQUESTS,
                seed=10 + n,
            ).start()
            for n, (role, server) in enumerate(servers.items())
        }
        load = {role: gen.wait_done(timeout=60) for role, gen in generators.items()}
        for role, stats in load.items():
            assert stats.sent == REQUESTS, (role, stats.summary())
            assert stats.errors == 0, (role, stats.summary())

        def all_counted(result: Vector) -> bool:
            return len(result) == 4 and all(float(s["value"][1]) == REQUESTS for s in result)

        prometheus.wait_for(
            f'sum by (version) (model_requests_total{{job="{JOB}"}})', all_counted, timeout=30
        )
        yield Fleet(servers, load, prometheus)
    finally:
        prometheus.remove(JOB)
        factory.stop_all()


def test_prometheus_counts_every_request_of_each_version(fleet: Fleet) -> None:
    for role, server in fleet.servers.items():
        v = server.version
        total = fleet.value(f'sum(model_requests_total{{job="{JOB}", version="{v}"}})')
        assert total == REQUESTS == fleet.load[role].answered
        predictions = fleet.value(f'sum(model_predictions_total{{job="{JOB}", version="{v}"}})')
        assert predictions == fleet.load[role].ok * BATCH
        assert fleet.load[role].by_version == {v: REQUESTS}  # X-Model-Version header


def test_error_rate_option_gives_that_share_of_500s(fleet: Fleet) -> None:
    def errors(role: str) -> float:
        v = fleet.version(role)
        return fleet.value(f'sum(model_requests_total{{job="{JOB}", version="{v}", code="500"}})')

    assert errors("control") == 0
    assert errors("errors") == fleet.load["errors"].by_status[500]  # server and client agree
    assert close_to(errors("errors") / REQUESTS, 0.2, REQUESTS)


def test_slow_tail_shows_in_the_upper_buckets_but_not_in_the_median(fleet: Fleet) -> None:
    def quantile(q: float, role: str) -> float:
        v = fleet.version(role)
        buckets = f'model_request_duration_seconds_bucket{{job="{JOB}", version="{v}"}}'
        return fleet.value(f"histogram_quantile({q}, sum by (le) ({buckets}))")

    # Server-side durations of a loaded 2-core machine reach tens of ms at p99; the tail
    # (300 ms more for 5 % of requests) is far above that, the median stays put.
    assert quantile(0.99, "tail") > 0.3
    assert quantile(0.99, "control") < 0.2
    assert quantile(0.5, "tail") < 0.01
    assert quantile(0.5, "control") < 0.01

    def above_300ms(role: str) -> float:
        sel = f'job="{JOB}", version="{fleet.version(role)}"'
        return fleet.value(
            f"sum(model_request_duration_seconds_count{{{sel}}})"
            f' - sum(model_request_duration_seconds_bucket{{{sel}, le="0.3"}})'
        )

    assert above_300ms("control") <= 0.01 * REQUESTS
    slow = above_300ms("tail")
    assert close_to(slow / REQUESTS, 0.05, REQUESTS)


def test_selection_rate_per_group_follows_the_options(fleet: Fleet) -> None:
    def rates(role: str) -> dict[str, float]:
        sel = f'job="{JOB}", version="{fleet.version(role)}"'
        return fleet.by_group(
            f'sum by (group) (model_predictions_total{{{sel}, predicted="1"}})'
            f" / sum by (group) (model_predictions_total{{{sel}}})"
        )

    per_group = REQUESTS * BATCH / 2
    groups = rates("groups")
    assert close_to(groups["a"], 0.6, per_group), groups
    assert close_to(groups["b"], 0.15, per_group), groups
    control = rates("control")  # default positive rate 0.3 for every group
    assert close_to(control["a"], 0.3, per_group), control
    assert close_to(control["b"], 0.3, per_group), control


def test_accuracy_per_group_shows_in_the_labels(fleet: Fleet) -> None:
    sel = f'job="{JOB}", version="{fleet.version("groups")}"'
    accuracy = fleet.by_group(
        f'sum by (group) (model_labelled_total{{{sel}, correct="true"}})'
        f" / sum by (group) (model_labelled_total{{{sel}}})"
    )
    per_group = REQUESTS * BATCH / 2
    assert close_to(accuracy["a"], 0.95, per_group), accuracy
    assert close_to(accuracy["b"], 0.7, per_group), accuracy
    # Each labelled group is the group the load generator sent, record for record.
    labelled = fleet.by_group(f"sum by (group) (model_labelled_total{{{sel}}})")
    assert labelled == {g: float(n) for g, n in fleet.load["groups"].by_group.items()}


def test_delayed_labels_arrive_only_after_the_delay(
    model_server_factory: ModelServerFactory,
) -> None:
    delay = 2.0
    server = model_server_factory(version="2", label_delay_s=delay, seed=5)
    first_sent = time.monotonic()
    with httpx.Client() as client:
        for n in range(20):
            group = "a" if n % 2 else "b"
            client.post(f"{server.url}/invocations", json={"group": group}).raise_for_status()
    last_answered = time.monotonic()
    assert last_answered - first_sent < delay / 2, "too slow to observe the wait"
    assert server.metric("model_predictions_total") == 20
    assert server.metric("model_labelled_total") == 0
    assert httpx.get(server.url).json()["pending_labels"] == 20

    first_seen = None
    deadline = last_answered + delay + 5.0
    while time.monotonic() < deadline:
        labelled = server.metric("model_labelled_total")
        now = time.monotonic()
        if labelled and first_seen is None:
            first_seen = now
        if labelled == 20:
            break
        time.sleep(0.05)
    assert first_seen is not None, "no label ever arrived"
    assert first_seen >= first_sent + delay
    assert server.metric("model_labelled_total") == 20
    assert time.monotonic() <= last_answered + delay + 1.0
    assert server.metric("model_labelled_total", group="a") == 10
    assert httpx.get(server.url).json()["pending_labels"] == 0


def test_restart_resets_counters_and_can_change_behaviour(
    model_server_factory: ModelServerFactory,
) -> None:
    server = model_server_factory(version="3")
    port = server.port
    for _ in range(5):
        assert server.invoke().status_code == 200
    assert server.metric("model_requests_total", code="200") == 5
    server.restart()
    assert server.port == port
    assert server.metric("model_requests_total") == 0
    server.restart(error_rate=1.0)
    assert server.invoke().status_code == 500
    assert server.metric("model_requests_total", code="500") == 1


def test_endpoints_speak_like_a_served_mlflow_model(
    model_server_factory: ModelServerFactory,
) -> None:
    server = model_server_factory(model="fraud.v2", version="12", seed=1)
    records = {"dataframe_records": [{"group": "a", "x": 1}, {"group": "b", "x": 2}]}
    response = httpx.post(f"{server.url}/invocations", json=records)
    assert response.status_code == 200
    assert response.headers["X-Model-Version"] == "12"
    assert [p in (0, 1) for p in response.json()["predictions"]] == [True, True]
    split = {"dataframe_split": {"columns": ["group"], "data": [["c"]]}}
    assert len(httpx.post(f"{server.url}/invocations", json=split).json()["predictions"]) == 1

    bad = httpx.post(f"{server.url}/invocations", json={"group": 'a"} or vector(1)'})
    assert bad.status_code == 400
    assert server.metric("model_requests_total", code="400") == 1
    assert "vector(1)" not in server.metrics_text()

    assert httpx.get(f"{server.url}/health").text == "ok\n"
    info = httpx.get(server.url).json()
    assert (info["model"], info["version"]) == ("fraud.v2", "12")
    assert info["behaviour"]["seed"] == 1
    assert httpx.get(f"{server.url}/nope").status_code == 404
    assert server.metric("model_predictions_total", model="fraud.v2", version="12") == 3


def test_sigterm_lets_the_request_in_flight_finish(
    model_server_factory: ModelServerFactory,
) -> None:
    server = model_server_factory(version="2", latency_ms=1500.0, jitter_ms=0.0)
    results: list[int] = []
    request = threading.Thread(target=lambda: results.append(server.invoke(timeout=10).status_code))
    request.start()
    deadline = time.monotonic() + 5
    while httpx.get(server.url).json()["in_flight"] == 0:
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.02)
    assert server.process is not None
    assert server.process.popen is not None
    server.process.signal(signal.SIGTERM)
    request.join(timeout=10)
    assert results == [200]
    assert server.process.popen.wait(timeout=10) == 0
    assert '"event": "model_server.stopped"' in server.log_tail()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health")


def test_load_generator_keeps_its_rate_and_its_group_mix(
    model_server_factory: ModelServerFactory,
) -> None:
    server = model_server_factory(version="5", seed=3)
    rps, total = 50.0, 60
    stats = LoadGenerator(
        server.url, rps=rps, groups={"a": 3, "b": 1}, max_requests=total, seed=9
    ).run(duration_s=30)
    assert stats.sent == stats.ok == total
    # Request i is due at i / rps: the last one cannot go before (total - 1) / rps.
    assert (total - 1) / rps <= stats.elapsed_s < (total - 1) / rps + 2.0
    assert sum(stats.by_group.values()) == total
    assert close_to(stats.by_group["a"] / total, 0.75, total)
    for group, count in stats.by_group.items():
        assert server.metric("model_predictions_total", group=group) == count


def test_load_generator_command_prints_a_summary(
    model_server_factory: ModelServerFactory, tmp_path: Path
) -> None:
    server = model_server_factory(version="6", error_rate=0.5, seed=2)
    completed = subprocess.run(
        [
            sys.executable, "-m", "canary.sim.loadgen", "--url", server.url,
            "--rps", "0", "--max-requests", "40", "--groups", "x=1,y=1",
            "--duration", "30", "--seed", "1",
        ],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["sent"] == 40
    assert summary["ok"] + summary["failed"] == 40
    assert summary["failed"] == summary["by_status"].get("500", 0) > 0
    assert summary["by_status"]["500"] == server.metric("model_requests_total", code="500")
    assert set(summary["by_group"]) == {"x", "y"}
