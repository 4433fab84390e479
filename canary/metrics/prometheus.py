"""Prometheus -> analysis snapshots: cumulative counts per arm, per metric, per slice.

Each tick reads the raw counter series of every selector in the policy, restricted to the
two versions of the rollout, and folds them into cumulative counts since the rollout began
(see :mod:`canary.metrics.counters` for why raw counters and not ``increase``). A failed
query is a measurement with outcome ``error``, not an exception: the tick decides, with the
policy's ``on_query_error``, whether to hold or roll back. A metric with no series at all is
left out of the snapshot, which the analysis reports as missing (no data).

The query text is built here from parsed selectors and validated names only: versions must
be MLflow version numbers, label names come from the policy schema, and slice values are
read from results, never written into a query.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from canary.analysis.snapshot import (
    Buckets,
    Counts,
    HistogramArm,
    MetricCounts,
    RatioArm,
    Snapshot,
)
from canary.core import names
from canary.core.policy import HistogramMetric, Policy, RatioMetric
from canary.core.promql import Matcher, parse_selector
from canary.errors import MetricsError
from canary.log import get_logger
from canary.metrics.counters import CounterTracker, Sample

log = get_logger(__name__)

BASELINE = "baseline"
SELECTOR_LABEL = "canary_selector"  # tags each selector's series in the combined query
CANARY = "canary"
_SEP = "\x1f"

Outcome = Literal["ok", "error"]


@dataclass(frozen=True)
class Arms:
    """Which version is which arm."""

    baseline: str
    canary: str

    def __post_init__(self) -> None:
        names.check(names.VERSION, self.baseline, "baseline version")
        names.check(names.VERSION, self.canary, "canary version")
        if self.baseline == self.canary:
            raise ValueError("baseline and canary must be different versions")

    def arm_of(self, version: str | None) -> str | None:
        if version == self.baseline:
            return BASELINE
        if version == self.canary:
            return CANARY
        return None


@dataclass(frozen=True)
class Measurement:
    """What one read produced: a snapshot, or an error; and the state for the next read."""

    outcome: Outcome
    snapshot: Snapshot | None
    state: dict[str, Any]
    error: str | None = None
    queries: int = 0


class QueryClient(Protocol):
    """The one Prometheus call we need: an instant query returning raw samples, evaluated
    at ``at`` (unix seconds), or now when None."""

    def instant(self, query: str, at: float | None = None) -> list[Sample]: ...


class MetricSource(Protocol):
    def read(
        self,
        policy: Policy,
        arms: Arms,
        *,
        t: float,
        canary_weight: float,
        state: Mapping[str, Any] | None,
    ) -> Measurement: ...


@dataclass(frozen=True)
class Query:
    """One selector of one policy item, with what each of its series counts for."""

    item: str
    role: Literal["events", "total", "buckets"]
    promql: str
    slice_by: str | None


def queries_for(policy: Policy, arms: Arms) -> list[Query]:
    """Every query a tick runs for ``policy``: raw selectors restricted to the two versions."""
    label = policy.analysis.version_label
    version = Matcher(label, "=~", f"{arms.baseline}|{arms.canary}")
    out: list[Query] = []
    for item in [*policy.analysis.metrics, *policy.analysis.fairness]:
        if isinstance(item, RatioMetric):
            pairs = [("events", item.events), ("total", item.total)]
        elif isinstance(item, HistogramMetric):
            pairs = [("buckets", item.buckets)]
        else:
            pairs = [("events", item.positives), ("total", item.total)]
        for role, text in pairs:
            promql = parse_selector(text).render((version,))
            out.append(Query(item.name, role, promql, item.slice_by))  # type: ignore[arg-type]
    return out


def _group_fn(
    query: Query, arms: Arms, version_label: str
) -> Callable[[Mapping[str, str]], str | None]:
    def group_of(labels: Mapping[str, str]) -> str | None:
        arm = arms.arm_of(labels.get(version_label))
        if arm is None:
            return None
        slice_value = ""
        if query.slice_by is not None:
            slice_value = labels.get(query.slice_by, "")
            if not slice_value:
                return None  # a series without the slice label cannot be attributed
        le = ""
        if query.role == "buckets":
            le = labels.get("le", "")
            if not le:
                return None
        return _SEP.join((arm, slice_value, le))

    return group_of


@dataclass
class SnapshotBuilder:
    """Pure: folds raw samples of every query into cumulative snapshots (and back to state)."""

    policy: Policy
    arms: Arms
    trackers: dict[str, CounterTracker] = field(default_factory=dict)

    @classmethod
    def from_state(
        cls, policy: Policy, arms: Arms, state: Mapping[str, Any] | None
    ) -> SnapshotBuilder:
        trackers = {
            key: CounterTracker.from_state(value)
            for key, value in (state or {}).get("trackers", {}).items()
        }
        return cls(policy, arms, trackers)

    def state(self) -> dict[str, Any]:
        return {"trackers": {k: t.to_state() for k, t in self.trackers.items()}}

    def fold(
        self, results: Mapping[Query, Sequence[Sample]], *, t: float, canary_weight: float
    ) -> Snapshot:
        label = self.policy.analysis.version_label
        totals: dict[tuple[str, str], dict[str, float]] = {}
        seen: dict[tuple[str, str], bool] = {}
        for query, samples in results.items():
            tracker = self.trackers.setdefault(query.promql, CounterTracker())
            before = bool(tracker.last)
            totals[(query.item, query.role)] = tracker.update(
                samples, _group_fn(query, self.arms, label)
            )
            seen[(query.item, query.role)] = before or bool(samples)
        metrics: dict[str, MetricCounts] = {}
        for item in [*self.policy.analysis.metrics, *self.policy.analysis.fairness]:
            if isinstance(item, HistogramMetric):
                if not seen.get((item.name, "buckets")):
                    continue
                metrics[item.name] = _histogram(totals[(item.name, "buckets")], item.slice_by)
            else:
                if not seen.get((item.name, "total")):
                    continue
                metrics[item.name] = _ratio(
                    totals.get((item.name, "events"), {}),
                    totals[(item.name, "total")],
                    item.slice_by,
                )
        return Snapshot(t=t, canary_weight=canary_weight, metrics=metrics)


def _split(key: str) -> tuple[str, str, str]:
    arm, slice_value, le = key.split(_SEP)
    return arm, slice_value, le


def _ratio(
    events: Mapping[str, float], total: Mapping[str, float], slice_by: str | None
) -> MetricCounts:
    def arm(which: str) -> RatioArm:
        if slice_by is None:
            key = _SEP.join((which, "", ""))
            return RatioArm(counts=Counts(events.get(key, 0.0), total.get(key, 0.0)))
        slices = sorted(
            {_split(k)[1] for k in [*events, *total] if _split(k)[0] in (BASELINE, CANARY)}
        )
        out: dict[str, Counts] = {}
        for value in slices:
            key = _SEP.join((which, value, ""))
            # events are a subset of total: a scrape between the two queries may see one
            # more event than trials; never report more events than total.
            n = total.get(key, 0.0)
            out[value] = Counts(min(events.get(key, 0.0), n), n)
        return RatioArm(slices=out)

    baseline, canary = arm(BASELINE), arm(CANARY)
    if slice_by is None:
        baseline = _clip(baseline)
        canary = _clip(canary)
    return MetricCounts(baseline=baseline, canary=canary)


def _clip(arm: RatioArm) -> RatioArm:
    assert arm.counts is not None
    return RatioArm(counts=Counts(min(arm.counts.events, arm.counts.total), arm.counts.total))


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def _histogram(totals: Mapping[str, float], slice_by: str | None) -> MetricCounts:
    bounds = sorted({_le(_split(k)[2]) for k in totals}, key=float)
    if not bounds or bounds[-1] != math.inf:
        bounds.append(math.inf)
    by_arm: dict[tuple[str, str], dict[float, float]] = {}
    for key, value in totals.items():
        arm, slice_value, le = _split(key)
        by_arm.setdefault((arm, slice_value), {})[_le(le)] = value

    def buckets(arm: str, slice_value: str) -> Buckets:
        values = by_arm.get((arm, slice_value), {})
        counts: list[float] = []
        running = 0.0
        for bound in bounds:
            running = max(running, values.get(bound, running))  # cumulative, never down
            counts.append(running)
        return Buckets(bounds=tuple(bounds), counts=tuple(counts))

    if slice_by is None:
        return MetricCounts(
            baseline=HistogramArm(buckets=buckets(BASELINE, "")),
            canary=HistogramArm(buckets=buckets(CANARY, "")),
        )
    slices = sorted({s for _, s in by_arm})
    return MetricCounts(
        baseline=HistogramArm(slices={s: buckets(BASELINE, s) for s in slices}),
        canary=HistogramArm(slices={s: buckets(CANARY, s) for s in slices}),
    )


class HttpQueryClient:
    """Instant queries through prometheus-api-client, errors translated to MetricsError."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        # One quick retry on a dropped connection; the tick itself is the retry loop.
        retry = Retry(total=1, backoff_factor=0.1, status_forcelist=[502, 503, 504])
        self._client = PrometheusConnect(
            url=self.url, disable_ssl=True, retry=retry, timeout=max(1, math.ceil(timeout))
        )

    def instant(self, query: str, at: float | None = None) -> list[Sample]:
        params = {"time": f"{at:.3f}"} if at is not None else None
        try:
            result = self._client.custom_query(query, params=params, timeout=self.timeout)
        except PrometheusApiClientException as exc:
            raise MetricsError(f"Prometheus refused the query: {exc}") from exc
        except requests.RequestException as exc:
            raise MetricsError(
                f"Prometheus unreachable at {self.url}: {type(exc).__name__}"
            ) from exc
        except ValueError as exc:
            raise MetricsError(f"Prometheus answered something that is not JSON: {exc}") from exc
        samples: list[Sample] = []
        try:
            for row in result:
                labels = {str(k): str(v) for k, v in row["metric"].items()}
                samples.append((labels, float(row["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsError(f"unexpected Prometheus result shape: {exc}") from exc
        return samples


class PrometheusSource:
    """The daemon's metric source: the tick's selectors, read in one instant query.

    Every query of a tick is evaluated at the same instant, ``settle`` seconds in the past:
    a ratio's events and total are two queries, and if a scrape landed between them the
    events would come from one scrape and the total from the next, a spurious dip in the
    rate for one tick. A fixed, slightly past instant sees complete scrapes only, so the
    whole snapshot is one consistent reading.
    """

    def __init__(
        self,
        client: QueryClient,
        *,
        settle: float = 2.0,
        clock: Callable[[], float] = time.time,
        combine: bool = True,
    ) -> None:
        self.client = client
        self.settle = settle
        self.clock = clock
        self.combine = combine

    def _combined(self, queries: list[Query], at: float) -> dict[Query, list[Sample]]:
        """Every selector of the tick in ONE query, each tagged with its index by
        ``label_replace`` and joined with ``or`` (distinct tags, so no series is dropped):
        one round trip instead of one per selector, and one evaluation instant by
        construction. The tag is removed before the series are tracked."""
        parts = [
            f'label_replace({q.promql}, "{SELECTOR_LABEL}", "{i}", "", "")'
            for i, q in enumerate(queries)
        ]
        results: dict[Query, list[Sample]] = {q: [] for q in queries}
        for labels, value in self.client.instant(" or ".join(parts), at):
            index = labels.get(SELECTOR_LABEL)
            if index is None or not index.isdigit() or int(index) >= len(queries):
                continue
            clean = {k: v for k, v in labels.items() if k != SELECTOR_LABEL}
            results[queries[int(index)]].append((clean, value))
        return results

    def read(
        self,
        policy: Policy,
        arms: Arms,
        *,
        t: float,
        canary_weight: float,
        state: Mapping[str, Any] | None,
    ) -> Measurement:
        builder = SnapshotBuilder.from_state(policy, arms, state)
        queries = queries_for(policy, arms)
        at = self.clock() - self.settle
        try:
            if self.combine:
                results = self._combined(queries, at)
            else:
                results = {q: self.client.instant(q.promql, at) for q in queries}
        except MetricsError as exc:
            log.warning("metrics.query_failed", model=policy.model, error=str(exc))
            # The previous state stays: a failed tick must not move the baseline.
            return Measurement("error", None, dict(state or {}), str(exc), len(queries))
        snapshot = builder.fold(results, t=t, canary_weight=canary_weight)
        return Measurement("ok", snapshot, builder.state(), None, len(queries))
