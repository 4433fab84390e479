"""Kayenta's NetflixACAJudge, re-run at every step on all the data so far.

Kayenta (spinnaker/kayenta, kayenta-judge) compares the canary's and the baseline's time
series of each metric with a two-sided Mann-Whitney U test: it computes the 98% confidence
interval of the location shift (canary - baseline) and the Hodges-Lehmann estimate, and
classifies the metric High when the interval's lower end exceeds 0.25 x |estimate|
(tolerance 0.25), Low when its upper end is below -0.25 x |estimate|, else Pass; a metric
with identical or all-tied data passes. Metrics with direction ``increase`` only fail High,
``decrease`` only Low, ``either`` both. Scores are 100 x passing / classified per group,
group-weighted, and a failing metric marked critical sets the score to 0; a judgment below
the marginal threshold (75 in the examples) fails the canary.

Our rule: every check of the policy is a critical metric (errors and p99 latency:
increase; accuracy per group: decrease; approval rate per group: either), one point per
60 s step (Kayenta's default step) for each arm, NaN points removed (``nanStrategy:
remove``), no outlier removal. A judgment runs after every step on all points so far
(Spinnaker's real-time canary with a growing lookback), and the first judgment in which any
metric fails rolls back. Critical metrics make this the most sensitive Kayenta setup: with
plain group weights one failing metric out of eight never takes the score below 75.
Mann-Whitney with ties uses the normal approximation with continuity and tie corrections,
as R's ``wilcox.test`` (which Kayenta's implementation follows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from benchmarks.sim.histogram import histogram_quantile
from benchmarks.sim.outcome import NO_ROLLBACK, Breach, Outcome, rollback_at
from benchmarks.sim.policyview import PolicyView
from benchmarks.sim.rollout import BASELINE, CANARY, HistogramCounts, RatioCounts, Rollout

FloatArray = npt.NDArray[np.float64]
Direction = Literal["increase", "decrease", "either"]
Classification = Literal["Pass", "High", "Low", "Nodata"]


@dataclass(frozen=True)
class KayentaSettings:
    step: float = 60.0
    confidence: float = 0.98
    tolerance: float = 0.25
    quantile: float = 0.99


def _ranks_and_ties(values: FloatArray) -> tuple[FloatArray, float]:
    """Average ranks (1-based) of ``values`` and the tie term sum(t^3 - t)."""
    uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    del uniq
    ends = np.cumsum(counts)
    avg = ends - (counts - 1) / 2.0
    c = counts.astype(np.float64)
    return avg[inverse].astype(np.float64), float(np.sum(c**3 - c))


def mann_whitney_z(experiment: FloatArray, control: FloatArray, shift: float = 0.0) -> float:
    """Standardised W of (experiment - shift) against control, R's two-sided correction.

    Positive when the experiment is larger. 0 when every value is tied.
    """
    nx, ny = experiment.shape[0], control.shape[0]
    ranks, ties = _ranks_and_ties(np.concatenate([experiment - shift, control]))
    dz = float(ranks[:nx].sum()) - nx * (nx + 1) / 2.0 - nx * ny / 2.0
    n = nx + ny
    var = nx * ny / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 0.0
    correction = 0.5 * math.copysign(1.0, dz) if dz != 0 else 0.0
    return float((dz - correction) / math.sqrt(var))


def _root(experiment: FloatArray, control: FloatArray, diffs: FloatArray, zq: float) -> float:
    """Where the shifted statistic falls to ``zq`` (R's ``root`` of ``wdiff``).

    The statistic is a step function of the shift that only jumps at the pairwise
    differences, so we evaluate it between consecutive differences (where no tie blurs it)
    and return the difference at which it first drops to ``zq`` or below.
    """
    points = np.unique(diffs)
    mids = np.concatenate([[points[0] - 1.0], (points[:-1] + points[1:]) / 2.0, [points[-1] + 1.0]])

    def above(j: int) -> bool:
        return mann_whitney_z(experiment, control, float(mids[j])) - zq > 0

    if not above(0):
        return float(points[0])
    lo, hi = 0, mids.shape[0] - 1  # above(lo); find the first j with not above(j)
    if above(hi):
        return float(points[-1])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if above(mid):
            lo = mid
        else:
            hi = mid
    return float(points[hi - 1])


def confidence_interval(
    experiment: FloatArray, control: FloatArray, confidence: float
) -> tuple[float, float, float]:
    """(lower, upper, Hodges-Lehmann estimate) of the shift experiment - control."""
    diffs = np.sort(np.subtract.outer(experiment, control).ravel())
    zq = float(special.ndtri(1.0 - (1.0 - confidence) / 2.0))
    lower = _root(experiment, control, diffs, zq)
    upper = _root(experiment, control, diffs, -zq)
    return lower, upper, float(np.median(diffs))


def classify(
    control: npt.ArrayLike,
    experiment: npt.ArrayLike,
    direction: Direction,
    confidence: float = 0.98,
    tolerance: float = 0.25,
) -> Classification:
    """Kayenta's MannWhitneyClassifier on one metric (NaN points already removed or not)."""
    c = np.asarray(control, dtype=np.float64)
    e = np.asarray(experiment, dtype=np.float64)
    c, e = c[~np.isnan(c)], e[~np.isnan(e)]
    if c.shape[0] == 0 or e.shape[0] == 0:
        return "Nodata"
    if c.shape == e.shape and np.array_equal(np.sort(c), np.sort(e)):
        return "Pass"
    if np.unique(np.concatenate([c, e])).shape[0] == 1:
        return "Pass"
    zq = float(special.ndtri(1.0 - (1.0 - confidence) / 2.0))
    z0 = mann_whitney_z(e, c)
    # The interval excludes 0 exactly when the test at shift 0 rejects; only then can the
    # metric be High or Low, so the interval is computed only then.
    may_high = direction in ("increase", "either") and z0 > zq
    may_low = direction in ("decrease", "either") and z0 < -zq
    if not (may_high or may_low):
        return "Pass"
    lower, upper, estimate = confidence_interval(e, c, confidence)
    critical = tolerance * abs(estimate)
    if may_high and lower > critical:
        return "High"
    if may_low and upper < -critical:
        return "Low"
    return "Pass"


def step_series(
    rollout: Rollout, view: PolicyView, step_ticks: int, quantile: float
) -> list[tuple[Breach, Direction, FloatArray]]:
    """One point per step and arm for every Kayenta metric: ((metric, slice), dir, (2, steps))."""
    ends = np.arange(step_ticks - 1, rollout.ticks, step_ticks)
    out: list[tuple[Breach, Direction, FloatArray]] = []
    for rule in view.rules:
        series = rollout.metrics.get(rule.name)
        if series is None:
            continue
        worse: Direction = "increase" if rule.worse_when == "higher" else "decrease"
        if isinstance(series, HistogramCounts):
            cum = series.counts[:, ends, :]
            delta = np.diff(cum, axis=1, prepend=0)
            out.append(
                ((rule.name, None), worse, histogram_quantile(quantile, series.bounds, delta))
            )
            continue
        assert isinstance(series, RatioCounts)
        ev = np.diff(series.events[:, ends, :], axis=1, prepend=0).astype(np.float64)
        tot = np.diff(series.total[:, ends, :], axis=1, prepend=0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(tot > 0, ev / np.maximum(tot, 1.0), np.nan)
        direction: Direction = "either" if rule.kind == "fairness" else worse
        for j, name in enumerate(series.slice_names()):
            out.append(((rule.name, name), direction, rates[:, :, j]))
    return out


def kayenta(
    rollout: Rollout, view: PolicyView, settings: KayentaSettings = KayentaSettings()
) -> Outcome:
    """Judge after every step; roll back at the first judgment with a failing metric."""
    tick_s = float(rollout.t[1] - rollout.t[0]) if rollout.ticks > 1 else float(rollout.t[0])
    step_ticks = max(1, round(settings.step / tick_s))
    metrics = step_series(rollout, view, step_ticks, settings.quantile)
    steps = rollout.ticks // step_ticks
    for j in range(steps):
        failing: list[Breach] = []
        for key, direction, values in metrics:
            verdict = classify(
                values[BASELINE, : j + 1],
                values[CANARY, : j + 1],
                direction,
                settings.confidence,
                settings.tolerance,
            )
            if verdict in ("High", "Low"):
                failing.append(key)
        if failing:
            return rollback_at(rollout, (j + 1) * step_ticks - 1, failing)
    return NO_ROLLBACK
