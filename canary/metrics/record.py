"""``canary record``: a rollout's metrics from Prometheus, as replay-format lines.

The series are read with range queries over the rollout's lifetime at the policy's interval,
then folded tick by tick through the same :class:`SnapshotBuilder` the daemon uses, so a
recording replays exactly like the live analysis would have seen it at that granularity.
A metric with no series at a tick is written with zero counts, so every line has every
metric the policy names and ``canary replay`` accepts the file as it is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import httpx

from canary.analysis.snapshot import (
    Buckets,
    Counts,
    HistogramArm,
    MetricCounts,
    RatioArm,
    Snapshot,
)
from canary.core.lifecycle import Rollout
from canary.core.policy import HistogramMetric, Policy
from canary.errors import MetricsError
from canary.metrics.counters import Sample
from canary.metrics.prometheus import Arms, Query, SnapshotBuilder, queries_for
from canary.metrics.replay_line import snapshot_line


def record_rollout(
    rollout: Rollout,
    prometheus_url: str,
    *,
    step: float | None = None,
    timeout: float = 30.0,
    weights: Sequence[tuple[float, float]] = (),
    end: float | None = None,
) -> list[dict[str, Any]]:
    """Replay-format lines for ``rollout``; raises MetricsError if Prometheus fails."""
    policy = Policy.model_validate(rollout.detail["policy"])
    if rollout.champion_version is None:
        raise MetricsError(f"rollout {rollout.id} has no champion version to compare with")
    arms = Arms(baseline=rollout.champion_version, canary=rollout.version)
    start = rollout.analysis_started_at or rollout.created_at
    finish = min(
        end or (rollout.updated_at if rollout.phase.terminal else time.time()), time.time()
    )
    interval = step or policy.analysis.interval
    if finish <= start:
        raise MetricsError(f"rollout {rollout.id} has no analysis time to record")
    client = httpx.Client(base_url=prometheus_url.rstrip("/"), timeout=timeout + 5)
    queries = queries_for(policy, arms)
    per_query: dict[Query, dict[float, list[Sample]]] = {}
    with client:
        for query in queries:
            per_query[query] = _range(client, query.promql, start, finish, interval, timeout)
    # Prometheus aligns the range's timestamps itself (the client rounds the start to whole
    # seconds): take the ticks from what it answered, not from our own arithmetic.
    stamps = sorted({stamp for series in per_query.values() for stamp in series})
    if not stamps:
        raise MetricsError(
            f"Prometheus has no samples of rollout {rollout.id}'s series between its start "
            "and end (retention, or a different Prometheus?)"
        )
    builder = SnapshotBuilder(policy, arms)
    lines = []
    for stamp in stamps:
        results = {q: per_query[q].get(_key(stamp), []) for q in queries}
        weight = _weight_at(weights, stamp, rollout.canary_weight)
        snapshot = builder.fold(results, t=max(stamp - start, 0.0), canary_weight=weight)
        lines.append(snapshot_line(_complete(policy, snapshot)))
    return lines


def _key(stamp: float) -> float:
    return round(stamp, 3)


def _range(
    client: httpx.Client,
    promql: str,
    start: float,
    end: float,
    step: float,
    timeout: float,
) -> dict[float, list[Sample]]:
    """A range query with the exact start time (the ticks are start + k * step; a client
    that rounds the start to whole seconds would move the baseline reading)."""
    params = {
        "query": promql,
        "start": f"{start:.3f}",
        "end": f"{end:.3f}",
        "step": f"{step:g}",
        "timeout": f"{timeout:g}s",
    }
    try:
        response = client.get("/api/v1/query_range", params=params)
    except httpx.HTTPError as exc:
        raise MetricsError(f"Prometheus unreachable: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise MetricsError(f"Prometheus refused {promql}: {response.status_code} {response.text}")
    try:
        result = response.json()["data"]["result"]
        out: dict[float, list[Sample]] = {}
        for row in result:
            labels = {str(k): str(v) for k, v in row["metric"].items()}
            for stamp, value in row["values"]:
                out.setdefault(_key(float(stamp)), []).append((labels, float(value)))
    except (KeyError, TypeError, ValueError) as exc:
        raise MetricsError(f"unexpected Prometheus result shape: {exc}") from exc
    return out


def _weight_at(weights: Sequence[tuple[float, float]], stamp: float, default: float) -> float:
    current = default if not weights else 0.0
    for at, weight in weights:
        if at <= stamp:
            current = weight
    return current


def _complete(policy: Policy, snapshot: Snapshot) -> Snapshot:
    """Every metric of the policy present; missing ones with zero counts."""
    metrics = dict(snapshot.metrics)
    for item in [*policy.analysis.metrics, *policy.analysis.fairness]:
        if item.name in metrics:
            continue
        if isinstance(item, HistogramMetric):
            empty = HistogramArm(buckets=Buckets(bounds=(math.inf,), counts=(0.0,)))
            if item.slice_by is not None:
                empty = HistogramArm(slices={})
            metrics[item.name] = MetricCounts(baseline=empty, canary=empty)
        else:
            arm = (
                RatioArm(counts=Counts(0.0, 0.0)) if item.slice_by is None else RatioArm(slices={})
            )
            metrics[item.name] = MetricCounts(baseline=arm, canary=arm)
    return Snapshot(t=snapshot.t, canary_weight=snapshot.canary_weight, metrics=metrics)
