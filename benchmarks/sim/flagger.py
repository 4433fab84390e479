"""Threshold checks per interval, as Flagger and Argo Rollouts run them.

Both tools query one value per metric for the last window (``rate(...[1m])``,
``histogram_quantile(0.99, ...)``) at every analysis interval and compare it with a fixed
bound; neither compares the canary with the baseline statistically. They differ in how
failures add up:

- Flagger (pkg/controller/scheduler.go): one failed check per analysis run in which any
  metric is out of range; the count never resets during the analysis; the run AFTER the
  count reaches ``threshold`` rolls back. Defaults: interval 60 s and metric window 1 m
  (code defaults), threshold 5 (the value in Flagger's documentation and tutorials; the
  code's fallback is 1).
- Argo Rollouts (AnalysisRun): each metric counts its own failed measurements; the analysis
  fails (and the rollout aborts) when one metric's count exceeds ``failureLimit``. We use
  its documented example: interval 5 m, window 5 m, failureLimit 3.

An interval with no canary data is skipped here; both tools count "no values" as a failure
unless told otherwise, so this favours them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from benchmarks.sim.histogram import histogram_quantile
from benchmarks.sim.outcome import NO_ROLLBACK, Breach, Outcome, rollback_at
from benchmarks.sim.policyview import PolicyView
from benchmarks.sim.rollout import CANARY, HistogramCounts, RatioCounts, Rollout


@dataclass(frozen=True)
class Threshold:
    """A bound on a per-interval value: fail above ``max`` or below ``min``."""

    max: float | None = None
    min: float | None = None

    def fails(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.max is not None and value > self.max:
            return True
        return self.min is not None and value < self.min


@dataclass(frozen=True)
class ThresholdSettings:
    """How often to check, over which window, and how failures add up."""

    interval: float = 60.0
    window: float = 60.0
    limit: int = 5
    per_metric: bool = False
    quantile: float = 0.99


FLAGGER = ThresholdSettings(interval=60.0, window=60.0, limit=5, per_metric=False)
ARGO = ThresholdSettings(interval=300.0, window=300.0, limit=3, per_metric=True)


def window_values(
    rollout: Rollout, view: PolicyView, end: int, ticks: int, quantile: float = 0.99
) -> dict[Breach, tuple[float, str | None]]:
    """The canary's value of every check over ticks (end - ticks, end].

    Keys are (metric, slice); a fairness check is keyed (name, None) and its value is the
    lowest/highest selection-rate ratio across slices, reported with the lowest slice.
    NaN where the window has no data.
    """
    start = end - ticks
    out: dict[Breach, tuple[float, str | None]] = {}
    for rule in view.rules:
        series = rollout.metrics.get(rule.name)
        if series is None:
            continue
        if isinstance(series, HistogramCounts):
            now = series.counts[CANARY, end]
            before = series.counts[CANARY, start] if start >= 0 else np.zeros_like(now)
            value = float(histogram_quantile(quantile, series.bounds, now - before))
            out[(rule.name, None)] = (value, None)
            continue
        assert isinstance(series, RatioCounts)
        ev = series.events[CANARY, end] - (series.events[CANARY, start] if start >= 0 else 0)
        tot = series.total[CANARY, end] - (series.total[CANARY, start] if start >= 0 else 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(tot > 0, ev / np.maximum(tot, 1), np.nan)
        names = series.slice_names()
        if rule.kind == "fairness":
            if np.any(np.isnan(rates)) or float(np.max(rates)) <= 0:
                out[(rule.name, None)] = (math.nan, None)
            else:
                low = int(np.argmin(rates))
                out[(rule.name, None)] = (float(rates[low] / np.max(rates)), names[low])
            continue
        for j, name in enumerate(names):
            out[(rule.name, name)] = (float(rates[j]), name)
    return out


def threshold_method(
    rollout: Rollout,
    view: PolicyView,
    bounds: Mapping[Breach, Threshold],
    settings: ThresholdSettings,
) -> Outcome:
    """Run the threshold checks over the rollout; the Outcome of the first rollback."""
    tick_s = float(rollout.t[1] - rollout.t[0]) if rollout.ticks > 1 else float(rollout.t[0])
    every = max(1, round(settings.interval / tick_s))
    window = max(1, round(settings.window / tick_s))
    failed = 0
    failed_by: dict[Breach, int] = {}
    last: list[Breach] = []
    for end in range(every - 1, rollout.ticks, every):
        if not settings.per_metric and failed >= settings.limit:
            return rollback_at(rollout, end, last)
        values = window_values(rollout, view, end, window, settings.quantile)
        failing = [
            (key, (key[0], shown))
            for key, (value, shown) in values.items()
            if key in bounds and bounds[key].fails(value)
        ]
        if not failing:
            continue
        if settings.per_metric:
            over = []
            for key, shown_as in failing:
                failed_by[key] = failed_by.get(key, 0) + 1
                if failed_by[key] > settings.limit:
                    over.append(shown_as)
            if over:
                return rollback_at(rollout, end, over)
        else:
            failed += 1
            last = [shown_as for _, shown_as in failing]
    return NO_ROLLBACK


def flagger(rollout: Rollout, view: PolicyView, bounds: Mapping[Breach, Threshold]) -> Outcome:
    return threshold_method(rollout, view, bounds, FLAGGER)


def argo(rollout: Rollout, view: PolicyView, bounds: Mapping[Breach, Threshold]) -> Outcome:
    return threshold_method(rollout, view, bounds, ARGO)
