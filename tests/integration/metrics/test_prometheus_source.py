"""The Prometheus source against a real Prometheus scraping real model servers: exact
cumulative counts per arm and slice, through a counter reset, and `record` agreeing with
what the daemon saw."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from canary.core.lifecycle import Phase, Rollout
from canary.core.policy import parse_policy
from canary.metrics.prometheus import Arms, HttpQueryClient, PrometheusSource
from canary.metrics.record import record_rollout
from canary.sim.config import SimConfig
from tests.harness.proc import wait_until

pytestmark = pytest.mark.integration


def policy_for(model: str):
    return parse_policy(
        f"""
model: {model}
trigger: {{new_versions: true}}
serving: {{address: "127.0.0.1:18000"}}
router: {{type: haproxy, runtime_api: "127.0.0.1:9999", backend: app}}
steps: [{{weight: 50}}]
analysis:
  interval: 1s
  metrics:
    - name: errors
      kind: ratio
      events: model_requests_total{{model="{model}", code=~"5.."}}
      total: model_requests_total{{model="{model}"}}
      worse_when: higher
    - name: latency
      kind: histogram
      buckets: model_request_duration_seconds_bucket{{model="{model}"}}
  fairness:
    - name: parity
      positives: model_predictions_total{{model="{model}", predicted="1"}}
      total: model_predictions_total{{model="{model}"}}
      slice_by: group
"""
    )


def send(server, count: int, group: str) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            client.post(f"{server.url}/invocations", json={"group": group})


def test_counts_are_exact_through_a_counter_reset(prometheus, prometheus_job, model_server_factory):
    model = f"src-{uuid.uuid4().hex[:8]}"
    v1 = model_server_factory(SimConfig(model=model, version="1", error_rate=0.1, seed=1))
    v2 = model_server_factory(SimConfig(model=model, version="2", error_rate=0.1, seed=2))
    prometheus.scrape(prometheus_job, [v1.target, v2.target], interval="1s")
    send(v1, 30, "a")
    total = f'sum(model_requests_total{{model="{model}"}})'
    prometheus.wait_for_value(total, lambda v: v == 30, timeout=30)

    policy = policy_for(model)
    # settle=0: the test waits for each scrape itself before reading
    source = PrometheusSource(HttpQueryClient(prometheus.url, timeout=5), settle=0.0)
    arms = Arms(baseline="1", canary="2")
    started = time.time()
    first = source.read(policy, arms, t=0.0, canary_weight=50, state=None)
    assert first.outcome == "ok"
    assert first.snapshot.metrics["errors"].baseline.counts.total == 0  # the baseline

    send(v1, 40, "a")
    send(v2, 25, "b")
    prometheus.wait_for_value(total, lambda v: v == 95, timeout=30)
    second = source.read(policy, arms, t=2.0, canary_weight=50, state=first.state)
    errors = second.snapshot.metrics["errors"]
    assert errors.baseline.counts.total == 40
    assert errors.canary.counts.total == 25
    assert 0 <= errors.canary.counts.events <= 25
    v2_errors = v2.metric("model_requests_total", code="500")
    assert errors.canary.counts.events == v2_errors
    parity = second.snapshot.metrics["parity"]
    # Only answered requests predict: the server's own count is the truth.
    assert parity.canary.slices["b"].total == v2.metric("model_predictions_total", group="b")
    assert parity.canary.slices["b"].total == 25 - v2_errors
    latency = second.snapshot.metrics["latency"]
    assert latency.canary.buckets.counts[-1] == 25

    v2.restart()  # the canary's server restarts: its counters start from zero
    send(v2, 10, "b")
    prometheus.wait_for_value(
        f'sum(model_requests_total{{model="{model}", version="2"}})',
        lambda v: v == 10,
        timeout=30,
    )
    third = source.read(policy, arms, t=4.0, canary_weight=50, state=second.state)
    errors = third.snapshot.metrics["errors"]
    assert errors.canary.counts.total == 35  # 25 before the restart + 10 after, no phantom
    assert errors.baseline.counts.total == 40
    assert third.snapshot.metrics["latency"].canary.buckets.counts[-1] == 35

    # `canary record` over the same time rebuilds the same counts from range queries.
    rollout = Rollout(
        id="r-1",
        model=model,
        version="2",
        champion_version="1",
        phase=Phase.ROLLED_BACK,
        created_at=started,
        updated_at=time.time() + 1,
        analysis_started_at=started,
        detail={"policy": policy.model_dump(mode="json")},
    )
    # Range queries see a scrape once a whole step has passed after it: poll, do not sleep.
    recorded: list[list[dict]] = []

    def record_reaches_the_end() -> bool:
        recorded[:] = [record_rollout(rollout, prometheus.url, step=1.0, end=time.time())]
        return bool(recorded[0][-1]["metrics"]["errors"]["canary"]["total"] == 35)

    wait_until(record_reaches_the_end, timeout=15, what="record sees the last scrape")
    lines = recorded[0]
    last = lines[-1]["metrics"]
    assert last["errors"]["canary"]["total"] == 35
    assert last["errors"]["baseline"]["total"] == 40
    assert set(last) == {"errors", "latency", "parity"}
    totals = [line["metrics"]["errors"]["canary"]["total"] for line in lines]
    assert totals == sorted(totals)  # cumulative: never goes backwards


def test_an_unreachable_prometheus_is_an_error_measurement():
    policy = policy_for("x-model")
    source = PrometheusSource(HttpQueryClient("http://127.0.0.1:9", timeout=1))
    measured = source.read(policy, Arms("1", "2"), t=0.0, canary_weight=5, state={"k": 1})
    assert measured.outcome == "error"
    assert "unreachable" in str(measured.error)
    assert measured.state == {"k": 1}


def test_bad_promql_is_an_error_measurement(prometheus):
    class Broken:
        def instant(self, query, at=None):
            return HttpQueryClient(prometheus.url).instant(query + "{{", at)

    measured = PrometheusSource(Broken()).read(
        policy_for("y-model"), Arms("1", "2"), t=0.0, canary_weight=5, state=None
    )
    assert measured.outcome == "error"
    assert "refused" in str(measured.error)
