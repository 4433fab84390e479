"""A histogram metric of the policy (latency) as per-bound exceedance tests.

Why per bound. Prometheus gives cumulative buckets, not samples, and a regression of the tail
alone (p99 worse, mean unchanged) is invisible to a test of the mean. The requests slower than
each bucket bound are a count of their own, compared between the arms like errors; the
histogram's e-process averages the bounds, most weight on the one nearest the baseline's p99.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from canary.analysis.arm_tests import ArmComparison
from canary.analysis.checks import RowRules
from canary.analysis.jsonform import (
    FormatError,
    parse_bounds,
)
from canary.analysis.metric_base import (
    LATER,
    Detail,
    Evaluation,
    IrregularError,
    MetricAnalysis,
    MetricTests,
    StructuralError,
    numbers_only,
    slice_names,
)
from canary.analysis.nulls import (
    contrast_design_effect,
    count_design_effect,
    null_for,
)
from canary.analysis.snapshot import Buckets, HistogramArm, MetricCounts, RatioArm
from canary.core.policy import HistogramMetric
from canary.stats.combine import log_average

FloatArray = NDArray[np.float64]


# Histogram bounds: weight of a bound whose baseline exceedance fraction is f is
# floor + exp(-(log10 f - log10 0.01)^2 / (2 * 0.5^2)): most weight near the baseline's p99.
BOUND_TARGET_LOG10 = -2.0
# The smallest share of slow requests the minimum sample waits for (see _evaluate).
RATE_FLOOR = 0.01
BOUND_SD_LOG10 = 0.5
BOUND_FLOOR = 0.02


def _buckets_of(arm: RatioArm | HistogramArm, what: str) -> HistogramArm:
    if not isinstance(arm, HistogramArm):
        raise StructuralError(f"{what} has counts where histogram buckets were expected")
    return arm


def _finite_bounds(buckets: Buckets) -> tuple[float, ...]:
    if not buckets.bounds or not math.isinf(buckets.bounds[-1]):
        raise StructuralError("buckets must end with +Inf")
    if len(buckets.bounds) != len(buckets.counts):
        raise StructuralError("bucket bounds and counts differ in number")
    return tuple(buckets.bounds[:-1])


class HistogramAnalysis(MetricAnalysis):
    """A histogram: per-bound exceedance tests, averaged with most weight near the baseline's
    p99, for the pooled histogram and (if sliced) each slice, shares as for ratio metrics."""

    def __init__(self, metric: HistogramMetric, share: float, alpha: float, power: float) -> None:
        super().__init__(metric.name, share, alpha, power)
        self.metric = metric
        self.null = null_for(metric.worse_when, metric.tolerance)
        # the last JSON bucket bounds known to parse to the given bounds (they repeat on
        # every line of a file, so most lines are checked with one list comparison)
        self._bounds_seen: tuple[list[Any], list[type], tuple[float, ...]] | None = None

    @property
    def evidence_after_setup(self) -> bool:
        return True

    def _layout_from(self, sample: MetricCounts) -> Any:
        sliced = self.metric.slice_by is not None
        groups = slice_names(sample, sliced, f"metric {self.name!r}")
        arms = (_buckets_of(sample.baseline, "baseline"), _buckets_of(sample.canary, "canary"))
        bounds: tuple[float, ...] | None = None
        baseline_total = 0.0
        for arm_index, arm in enumerate(arms):
            found = [arm.buckets] if arm.buckets is not None else list((arm.slices or {}).values())
            for buckets in found:
                these = _finite_bounds(buckets)
                if bounds is None:
                    bounds = these
                elif these != bounds:
                    raise StructuralError("arms or slices use different bucket bounds")
                # Checked here too: a sample that sets no layout yet (no baseline requests)
                # is never checked by the row rules, and must not hide a broken count.
                for count in buckets.counts:
                    if not (count >= 0 and math.isfinite(count)):
                        arm_name = ("baseline", "canary")[arm_index]
                        raise StructuralError(
                            f"{arm_name} bucket count {count!r} is negative or not finite"
                        )
                if arm_index == 0:
                    baseline_total += buckets.counts[-1]
        if bounds is None or baseline_total <= 0 or not bounds:
            return None
        return ("histogram", tuple(groups) if groups is not None else None, bounds)

    def _rules(self, layout: Any) -> tuple[RowRules, list[int]]:
        groups = [*layout[1], LATER] if layout[1] is not None else [None]
        bounds = layout[2]
        per_arm = len(bounds) + 1
        columns: list[str] = []
        pairs: list[tuple[int, int]] = []
        canary: list[int] = []
        for group in groups:
            if group is None:
                where = ""
            elif group is LATER:
                where = " slices that appeared after setup"
            else:
                where = f" slice {group!r}"
            for arm in ("baseline", "canary"):
                base = len(columns)
                columns += [f"{arm}{where} bucket le={b:g}" for b in bounds]
                columns.append(f"{arm}{where} bucket le=+Inf")
                pairs += [(base + i, base + i + 1) for i in range(per_arm - 1)]
                if arm == "canary":
                    canary.append(base + per_arm - 1)
        return RowRules.build(columns, pairs), canary

    def _row(self, sample: MetricCounts, layout: Any) -> list[float]:
        """Cumulative bucket counts per slice and arm; an absent slice counts as zero."""
        groups: tuple[str, ...] | None = layout[1]
        full = (*layout[2], math.inf)
        base, can = sample.baseline, sample.canary
        if not isinstance(base, HistogramArm) or not isinstance(can, HistogramArm):
            raise StructuralError("an arm has counts where histogram buckets were expected")
        found: list[Buckets | None]
        if groups is None:
            found = [base.buckets, can.buckets]
            if found[0] is None or found[1] is None:
                raise StructuralError("an arm has slices but the policy does not slice it")
        else:
            b_slices, c_slices = base.slices, can.slices
            if b_slices is None or c_slices is None:
                raise StructuralError("an arm has no slices but the policy slices this metric")
            found = []
            for group in groups:
                found += [b_slices.get(group), c_slices.get(group)]
            known = set(groups)
            for slices in (b_slices, c_slices):  # the slices that appeared later, summed
                later = [item for name, item in slices.items() if name not in known]
                for item in later:
                    if item.bounds != full:
                        raise StructuralError("bucket bounds changed")
                summed = np.sum([item.counts for item in later], axis=0) if later else None
                found.append(None if summed is None else Buckets(full, tuple(summed.tolist())))
        row: list[float] = []
        zeros = (0.0,) * len(full)
        for buckets in found:
            if buckets is None:
                row += zeros
                continue
            if buckets.bounds is not full and buckets.bounds != full:
                raise StructuralError("bucket bounds changed")
            row += buckets.counts
        return row

    @property
    def is_histogram(self) -> bool:
        return True

    def _row_json(self, value: Any, layout: Any) -> list[float]:
        groups: tuple[str, ...] | None = layout[1]
        full = (*layout[2], math.inf)
        if len(value) != 2:
            raise IrregularError
        arms = (value["baseline"], value["canary"])
        found: list[Any] = []
        if groups is None:
            for arm in arms:
                if len(arm) != 1:
                    raise IrregularError
                found.append(arm["buckets"])
        else:
            slices = []
            known = set(groups)
            later_sums: list[Any] = []
            for arm in arms:
                if len(arm) != 1 or type(arm["slices"]) is not dict:
                    raise IrregularError
                slices.append(arm["slices"])
                later: list[list[float]] = []
                for name, item in arm["slices"].items():  # every slice must be well formed
                    if type(item) is not dict or len(item) != 1:
                        raise IrregularError
                    counts = self._json_counts(item["buckets"], full)
                    if name not in known:
                        later.append(counts)
                later_sums.append([sum(col) for col in zip(*later, strict=True)] or None)
            for group in groups:
                for arm_slices in slices:
                    item = arm_slices.get(group)
                    found.append(None if item is None else item["buckets"])
            row: list[float] = []
            zeros = (0.0,) * len(full)
            for buckets in found:
                row += zeros if buckets is None else self._json_counts(buckets, full)
            for summed in later_sums:
                row += zeros if summed is None else summed
            return row
        row = []
        zeros = (0.0,) * len(full)
        for buckets in found:
            row += zeros if buckets is None else self._json_counts(buckets, full)
        return row

    def _json_counts(self, buckets: Any, full: tuple[float, ...]) -> list[float]:
        """Counts of a JSON bucket list whose bounds are ``full`` (else irregular)."""
        if type(buckets) is not list:
            raise IrregularError
        raw = [le for le, _ in buckets]
        kinds = list(map(type, raw))  # 1 == 1.0 == True: equal values are not enough
        known = self._bounds_seen
        if known is None or known[0] != raw or known[1] != kinds or known[2] != full:
            try:
                bounds = parse_bounds(tuple(raw), "buckets")
            except FormatError:
                raise IrregularError from None
            if bounds != full:
                raise IrregularError
            self._bounds_seen = (raw, kinds, full)  # the same raw bounds parse the same
        counts = [count for _, count in buckets]
        if not numbers_only(counts):
            raise IrregularError
        return counts

    def _create_tests(self, reference: FloatArray) -> MetricTests:
        layout = self._pending_layout
        groups = list(layout[1]) if layout[1] is not None else None
        bounds = layout[2]
        n_bounds = len(bounds)
        per_arm = n_bounds + 1
        n_groups = len(groups) if groups else 1
        width = 2 * per_arm * (n_groups + 1 if groups else 1)  # sliced: later slices too
        if groups is None:
            labels: list[str | None] = [None]
            shares = np.array([1.0])
            members: list[list[int]] = [[0]]
        else:
            labels = [None, *groups]
            shares = np.array([0.5] + [0.5 / n_groups] * n_groups)
            # the pooled histogram also counts the slices that appeared after setup
            members = [list(range(n_groups + 1))] + [[g] for g in range(n_groups)]
        n_rep = len(labels)
        n_tests = n_rep * n_bounds
        xc, nc, xb, nb = (np.zeros((width, n_tests)) for _ in range(4))
        for r, groups_of_test in enumerate(members):
            for b in range(n_bounds):
                t = r * n_bounds + b
                for g in groups_of_test:
                    b_base = 2 * per_arm * g
                    c_base = b_base + per_arm
                    for base, xm, nm in ((b_base, xb, nb), (c_base, xc, nc)):
                        total = base + per_arm - 1
                        nm[total, t] = 1.0
                        if self.null.complement:  # worse when lower: adverse = at most b
                            xm[base + b, t] = 1.0
                        else:  # adverse = slower than b
                            xm[total, t] += 1.0
                            xm[base + b, t] -= 1.0
        # bound weights from the baseline at setup (that tick is not evidence)
        bound_w = np.empty((n_rep, n_bounds))
        for r in range(n_rep):
            for b in range(n_bounds):
                t = r * n_bounds + b
                n_b = float(reference @ nb[:, t])
                frac = float(reference @ xb[:, t]) / n_b if n_b > 0 else 0.0
                weight = BOUND_FLOOR
                if 0 < frac < 1:
                    z = (math.log10(frac) - BOUND_TARGET_LOG10) / BOUND_SD_LOG10
                    weight += math.exp(-0.5 * z * z)
                bound_w[r, b] = weight
        bound_w /= bound_w.sum(axis=1, keepdims=True)
        alphas = (self.alpha * self.share * shares[:, None] * bound_w).reshape(-1)
        if self.null.test == "count":
            design = np.full(n_tests, count_design_effect(self.null, self.metric.tolerance))
        else:
            design = np.empty(n_tests)
            for t in range(n_tests):
                n_b = float(reference @ nb[:, t])
                rate = (float(reference @ xb[:, t]) + 0.5) / (n_b + 1.0)
                design[t] = contrast_design_effect(self.null, rate)
        top = bound_w.argmax(axis=1)
        sized = np.zeros(n_tests, dtype=bool)
        sized[np.arange(n_rep) * n_bounds + top] = True  # only the top bound sizes the sample
        runner = ArmComparison(self.null, (xc, nc, xb, nb), alphas, design, self.power, sized=sized)
        return MetricTests(
            labels=labels,
            shares=shares,
            extra={"runner": runner, "bound_w": bound_w, "top": top, "bounds": bounds},
        )

    def _reduce(
        self, tests: MetricTests, log_e_bounds: FloatArray, info: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        runner: ArmComparison = tests.extra["runner"]
        bound_w: FloatArray = tests.extra["bound_w"]
        top: NDArray[np.intp] = tests.extra["top"]
        n_rep, n_bounds = bound_w.shape
        shaped = log_e_bounds.reshape(*log_e_bounds.shape[:-1], n_rep, n_bounds)
        log_e_tests = log_average(shaped, bound_w)
        top_cols = np.arange(n_rep) * n_bounds + top
        ratio = info[..., top_cols] / runner.required[top_cols]
        progress = np.minimum(ratio.min(axis=-1), 1.0)
        return log_e_tests, log_average(log_e_tests, tests.shares), progress

    def _evaluate(self, increments: FloatArray, setup: MetricTests | None) -> Evaluation:
        tests = setup if setup is not None else self.tests
        assert tests is not None
        runner: ArmComparison = tests.extra["runner"]
        log_e_bounds, info, block = runner.advance(increments)
        if runner.count is not None:
            # A tail that holds fewer than RATE_FLOOR of the requests is sized as if it held
            # that many: a fast, stable model (every request in the first bucket) would
            # otherwise never reach its minimum sample, since the count test's information
            # grows with slow requests. Only promotion waits on this; rollback does not.
            info = np.maximum(info, RATE_FLOOR * block.exposure)
        log_e_tests, log_e, progress = self._reduce(tests, log_e_bounds, info)
        return Evaluation(
            log_e=log_e,
            log_e_tests=log_e_tests,
            enough=progress >= 1.0,
            progress=progress,
            commit=lambda row: runner.commit(block, row),
        )

    def detail(self, test: int) -> Detail:
        """The bound that contributes most to the test's average: ratio of the fractions of
        requests beyond it (canary / baseline) with its interval."""
        assert self.tests is not None
        assert self.last is not None
        runner: ArmComparison = self.tests.extra["runner"]
        bound_w: FloatArray = self.tests.extra["bound_w"]
        n_bounds = bound_w.shape[1]
        log_e_bounds, _ = runner.log_e_now()
        cols = np.arange(test * n_bounds, (test + 1) * n_bounds)
        best = int(cols[np.argmax(log_e_bounds[cols] + np.log(bound_w[test]))])
        alpha = (
            self.alpha
            * self.share
            * float(self.tests.shares[test])
            * float(bound_w[test, best - test * n_bounds])
        )
        estimate, interval = runner.describe(self.last, best, alpha)
        return Detail(
            slice=self.tests.labels[test],
            estimate=estimate,
            interval=interval,
            measure="ratio of slow requests canary/baseline",
        )
