"""What the analysis sees at a tick: cumulative counts since the rollout began, per arm.

Why cumulative counts. Prometheus counters are cumulative, a tick can be late or repeated,
and a daemon that restarts must be able to rebuild its evidence by replaying what it stored:
with cumulative counts a snapshot is a fact about the rollout so far, and the analysis takes
differences itself. The daemon's Prometheus source builds these (after handling counter
resets); the replay reader parses them from JSON lines. Both produce exactly these types.

A metric's arm holds either one set of counts or one set per slice (a value of the policy's
``slice_by`` label), never both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

INF = float("inf")


@dataclass(frozen=True, slots=True)
class Counts:
    """Cumulative events and total of one arm (and one slice) of a ratio metric.

    For a fairness check ``events`` are the positive predictions.
    """

    events: float
    total: float


@dataclass(frozen=True, slots=True)
class RatioArm:
    """One arm of a ratio metric or fairness check: overall counts or counts per slice."""

    counts: Counts | None = None
    slices: Mapping[str, Counts] | None = None


@dataclass(frozen=True, slots=True)
class Buckets:
    """Cumulative histogram buckets: ``counts[i]`` requests took at most ``bounds[i]``.

    Bounds ascend and the last one is +Inf, so ``counts[-1]`` is the number of requests.
    """

    bounds: tuple[float, ...]
    counts: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class HistogramArm:
    """One arm of a histogram metric: overall buckets or buckets per slice."""

    buckets: Buckets | None = None
    slices: Mapping[str, Buckets] | None = None


@dataclass(frozen=True, slots=True)
class MetricCounts:
    """Both arms of one metric at one tick."""

    baseline: RatioArm | HistogramArm
    canary: RatioArm | HistogramArm


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One tick: seconds since the rollout began, the configured canary percentage and the
    cumulative counts of every metric the source could read (a missing metric means no data)."""

    t: float
    canary_weight: float
    metrics: Mapping[str, MetricCounts]
