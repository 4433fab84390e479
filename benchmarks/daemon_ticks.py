"""How many analysis ticks per second one controller runs, and how fast a breach moves traffic.

Part 1: N concurrent rollouts (N = 10, 100, 1000) on one controller with the daemon's
thread pool (8 workers), each tick reading its policy's four checks (seven selectors) from a
real Prometheus scraping real model servers, analysing, and saving to a real SQLite store.
The router is an in-memory one here so the table measures the analysis path; part 2 uses
the real HAProxy.

Part 2: the time from the tick that sees a breach to HAProxy holding weight 0 for the
canary, through the real runtime API, over repeated rollbacks.

    python -m benchmarks.daemon_ticks [--seconds 20] [--sizes 10,100,1000]

Prints Markdown tables and saves them to benchmarks/results/daemon_ticks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from canary import log
from canary.core.lifecycle import Phase, Rollout
from canary.core.policy import parse_policy
from canary.metrics.prometheus import HttpQueryClient, PrometheusSource
from canary.service.controller import Controller
from canary.service.evidence import EvidenceCache
from canary.service.policies import PolicySet
from canary.service.tick import TickContext
from canary.sim.config import SimConfig
from canary.sim.loadgen import LoadGenerator
from canary.store.sql import SqlStore
from canary.traffic.base import Address
from canary.traffic.haproxy import HAProxyRouter
from tests.harness.haproxy import start_haproxy
from tests.harness.model_server import ModelServerFactory
from tests.harness.prometheus import start_prometheus
from tests.unit.service.fakes import FakeRegistry, FakeRouter, FakeServing

RESULTS = Path(__file__).parent / "results" / "daemon_ticks.md"
MODEL = "bench-model"

POLICY = textwrap.dedent(
    """
    model: bench-model
    trigger: {new_versions: true}
    serving: {address: "127.0.0.1:18000"}
    router: {type: haproxy, runtime_api: "127.0.0.1:9999", backend: app}
    steps: [{weight: 50, min_duration: 10h}]
    analysis:
      interval: 1s
      max_duration: 24h
      metrics:
        - name: errors
          kind: ratio
          events: model_requests_total{model="bench-model", code=~"5.."}
          total: model_requests_total{model="bench-model"}
          worse_when: higher
          tolerance: {relative: 0.2}
        - name: latency
          kind: histogram
          buckets: model_request_duration_seconds_bucket{model="bench-model"}
        - name: accuracy
          kind: ratio
          events: model_labelled_total{model="bench-model", correct="true"}
          total: model_labelled_total{model="bench-model"}
          worse_when: lower
          slice_by: group
          tolerance: {absolute: 0.05}
      fairness:
        - name: parity
          positives: model_predictions_total{model="bench-model", predicted="1"}
          total: model_predictions_total{model="bench-model"}
          slice_by: group
    """
)


def make_rollouts(store: SqlStore, n: int, policy_json: dict, now: float) -> list[str]:
    ids = []
    for i in range(n):
        rollout = Rollout(
            id=f"bench-{n}-{i}",
            model=f"{MODEL}-{n}-{i}",  # one active rollout per model: distinct names
            version="2",
            champion_version="1",
            phase=Phase.PROGRESSING,
            step=0,
            canary_weight=50.0,
            created_at=now,
            updated_at=now,
            step_started_at=now,
            analysis_started_at=now,
            detail={"policy": policy_json},
        )
        store.save(rollout, expected_revision=0)
        ids.append(rollout.id)
    return ids


def throughput(workdir: Path, prometheus_url: str, n: int, seconds: float) -> dict[str, float]:
    store = SqlStore(f"sqlite:///{workdir / f'ticks-{n}.db'}")
    policy = parse_policy(POLICY)
    ids = make_rollouts(store, n, policy.model_dump(mode="json"), time.time())
    policies_dir = workdir / f"policies-{n}"
    policies_dir.mkdir()
    (policies_dir / "p.yaml").write_text(POLICY)
    policy_set = PolicySet(policies_dir)
    policy_set.load()
    router = FakeRouter()
    ctx = TickContext(
        store=store,
        registry=FakeRegistry(),
        metrics=PrometheusSource(HttpQueryClient(prometheus_url, timeout=10)),
        outbox=None,
        router_for=lambda _p: router,
        serving_for=lambda _p: FakeServing(),
        evidence=EvidenceCache(store),
    )
    controller = Controller(ctx, policy_set)
    durations: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    missed = 0

    def loop(rollout_ids: list[str]) -> None:
        nonlocal errors, missed
        # Like the daemon: every rollout is due once per interval (1 s).
        while time.monotonic() < deadline:
            round_start = time.monotonic()
            for rollout_id in rollout_ids:
                report = controller.tick(rollout_id)
                with lock:
                    durations.append(report.seconds)
                    errors += report.error is not None
            spent = time.monotonic() - round_start
            if spent < 1.0:
                time.sleep(min(1.0 - spent, max(0.0, deadline - time.monotonic())))
            else:
                with lock:
                    missed += len(rollout_ids)

    workers = 8
    shards = [ids[i::workers] for i in range(workers)]
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(loop, [s for s in shards if s]))
    elapsed = time.monotonic() - started
    store.close()
    durations.sort()
    return {
        "rollouts": n,
        "ticks": len(durations),
        "ticks_per_s": len(durations) / elapsed,
        "due_per_s": float(n),
        "p50_ms": 1000 * durations[len(durations) // 2],
        "p99_ms": 1000 * durations[int(len(durations) * 0.99)],
        "errors": errors,
        "late_rounds": missed,
    }


def rollback_latency(
    workdir: Path, prometheus_url: str, servers: ModelServerFactory, trials: int
) -> list[float]:
    """Seconds from the start of the tick that detects a breach to HAProxy at weight 0."""
    v1 = servers(SimConfig(model=MODEL, version="1", error_rate=0.02, seed=1))
    (workdir / "haproxy").mkdir(exist_ok=True)
    haproxy = start_haproxy(workdir / "haproxy", {"champion": f"127.0.0.1:{v1.port}"})
    router = HAProxyRouter(haproxy.runtime_tcp.removeprefix("tcp:"), haproxy.backend)
    out = []
    try:
        for trial in range(trials):
            store = SqlStore(f"sqlite:///{workdir / f'rb-{trial}.db'}")
            text = POLICY.replace("bench-model", MODEL)
            policy = parse_policy(text)
            (rid,) = make_rollouts(store, 1, policy.model_dump(mode="json"), time.time())
            rollout = store.get(rid).rollout
            router.set_backend("canary", Address.parse(f"127.0.0.1:{v1.port}"))
            ctx = TickContext(
                store=store,
                registry=FakeRegistry(),
                metrics=_Breaching(),
                outbox=None,
                router_for=lambda _p: router,
                serving_for=lambda _p: FakeServing(),
                evidence=EvidenceCache(store),
            )
            controller = Controller(ctx, PolicySet(workdir))
            controller.tick(rollout.id)  # at 50 %: reconciled to the stored weight
            assert router.read().canary == 50.0
            started = time.perf_counter()
            report = controller.tick(rollout.id)
            while router.read().canary != 0.0:
                time.sleep(0.0005)
            out.append(time.perf_counter() - started)
            assert report.rollout is not None
            assert report.rollout.phase is Phase.ROLLED_BACK, report
            store.close()
    finally:
        haproxy.process.stop()
    return out


class _Breaching:
    """A metric source whose second reading shows an overwhelming error regression."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, policy, arms, *, t, canary_weight, state):
        from canary.analysis.snapshot import Counts, MetricCounts, RatioArm, Snapshot
        from canary.metrics.prometheus import Measurement

        self.calls += 1
        k = self.calls
        metrics = {
            "errors": MetricCounts(
                RatioArm(counts=Counts(10 * k, 10_000 * k)),
                RatioArm(counts=Counts(0 if k == 1 else 3000, 10_000 * k)),
            )
        }
        return Measurement("ok", Snapshot(t=t, canary_weight=canary_weight, metrics=metrics), {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    log.configure("warning", "console")
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        workdir = Path(tmp)
        prometheus = start_prometheus(workdir / "prometheus")
        servers = ModelServerFactory(workdir / "servers")
        try:
            v1 = servers(
                SimConfig(
                    model="bench-model", version="1", error_rate=0.02, label_delay_s=0.0, seed=1
                )
            )
            v2 = servers(
                SimConfig(
                    model="bench-model", version="2", error_rate=0.02, label_delay_s=0.0, seed=2
                )
            )
            prometheus.scrape("bench", [v1.target, v2.target], interval="1s")
            loads = [
                LoadGenerator(s.url, rps=100, groups={"a": 0.5, "b": 0.5}).start() for s in (v1, v2)
            ]
            prometheus.wait_for_value(
                'sum(model_requests_total{model="bench-model"})', lambda v: v > 0, timeout=30
            )
            rows = []
            for n in sizes:
                print(f"... {n} rollouts for {args.seconds:.0f}s", flush=True)
                rows.append(throughput(workdir, prometheus.url, n, args.seconds))
            for load in loads:
                load.stop()
            print(f"... {args.trials} rollbacks through HAProxy", flush=True)
            latencies = rollback_latency(workdir, prometheus.url, servers, args.trials)
        finally:
            servers.stop_all()
            prometheus.process.stop()
    lines = [
        "## Analysis ticks per second, one controller, real Prometheus and SQLite",
        "",
        f"Each rollout is due every second; {args.seconds:.0f} s per row; 8 worker threads; "
        "7 PromQL selectors per tick (ratio, histogram, ratio by group, fairness by group).",
        "",
        "| rollouts | ticks due/s | ticks run/s | tick p50 (ms) | tick p99 (ms) | errors | "
        "late ticks |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['rollouts']} | {r['due_per_s']:.0f} | {r['ticks_per_s']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['late_rounds']} |"
        )
    latencies.sort()
    lines += [
        "",
        "## From the tick that sees a breach to HAProxy at weight 0",
        "",
        f"{len(latencies)} rollbacks; the tick reads, analyses, saves rolling_back, sets the "
        "weight through the runtime API, tags the registry (in memory here) and saves "
        "rolled_back; the clock stops when HAProxy reports weight 0.",
        "",
        "| median (ms) | p90 (ms) | max (ms) |",
        "| --- | --- | --- |",
        f"| {1000 * statistics.median(latencies):.1f} | "
        f"{1000 * latencies[int(len(latencies) * 0.9)]:.1f} | {1000 * latencies[-1]:.1f} |",
        "",
        "Command: `python -m benchmarks.daemon_ticks`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
