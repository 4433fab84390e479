"""A ratio metric of the policy (errors / requests, correct / labelled) as tests.

Why pooled and per slice. A regression everywhere is caught fastest on the pooled counts, one
confined to a group only in that group's counts; the metric's share of alpha is split half and
half, the slices' half equally among the slices present at setup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from canary.analysis.arm_tests import ArmComparison
from canary.analysis.checks import RowRules
from canary.analysis.json_rows import json_ratio_row
from canary.analysis.metric_base import (
    LATER,
    Detail,
    Evaluation,
    MetricAnalysis,
    MetricTests,
    StructuralError,
    arm_counts,
    has_counts,
    slice_names,
)
from canary.analysis.nulls import (
    contrast_design_effect,
    count_design_effect,
    null_for,
)
from canary.analysis.snapshot import MetricCounts, RatioArm
from canary.core.policy import RatioMetric
from canary.stats.combine import log_average

FloatArray = NDArray[np.float64]


def _ratio_columns(groups: list[str] | None) -> tuple[list[str], list[tuple[int, int]]]:
    """Column names and (events, total) pairs: per slice present at setup, then the slices
    that appeared later, summed (they count in the pooled test only)."""
    columns: list[str] = []
    pairs: list[tuple[int, int]] = []
    labels: list[str | None] = [None] if groups is None else [*groups, LATER]
    for g_index, group in enumerate(labels):
        if group is None:
            where = ""
        elif group is LATER:
            where = " slices that appeared after setup"
        else:
            where = f" slice {group!r}"
        base = 4 * g_index
        columns += [
            f"baseline{where} events",
            f"baseline{where} total",
            f"canary{where} events",
            f"canary{where} total",
        ]
        pairs += [(base, base + 1), (base + 2, base + 3)]
    return columns, pairs


def _ratio_row(sample: MetricCounts, groups: Sequence[str] | None, what: str) -> list[float]:
    """Cumulative counts in column order; a slice absent from an arm counts as zero (if it
    had counts before, the row check reports them going backwards)."""
    base = sample.baseline
    can = sample.canary
    if not isinstance(base, RatioArm) or not isinstance(can, RatioArm):
        raise StructuralError(f"{what} has histogram buckets where counts were expected")
    if groups is None:
        b, c = base.counts, can.counts
        if b is None or c is None:
            raise StructuralError("an arm has slices but the policy does not slice this metric")
        return [b.events, b.total, c.events, c.total]
    b_slices = base.slices
    c_slices = can.slices
    if b_slices is None or c_slices is None:
        raise StructuralError("an arm has no slices but the policy slices this metric")
    row: list[float] = []
    for group in groups:
        b_counts = b_slices.get(group)
        c_counts = c_slices.get(group)
        row += (b_counts.events, b_counts.total) if b_counts is not None else (0.0, 0.0)
        row += (c_counts.events, c_counts.total) if c_counts is not None else (0.0, 0.0)
    known = set(groups)
    for slices in (b_slices, c_slices):  # later slices, summed
        later = [counts for name, counts in slices.items() if name not in known]
        row += (sum(c.events for c in later), sum(c.total for c in later))
    return row


class RatioAnalysis(MetricAnalysis):
    """A ratio metric: one test, or a pooled test and one per slice.

    Shares within the metric: an unsliced metric has one test; a sliced one gives half of
    its share to the pooled test (all slices summed) and splits the other half equally among
    the slices present at setup.
    """

    def __init__(self, metric: RatioMetric, share: float, alpha: float, power: float) -> None:
        super().__init__(metric.name, share, alpha, power)
        self.metric = metric
        self.null = null_for(metric.worse_when, metric.tolerance)
        self.runner: ArmComparison | None = None

    def _layout_from(self, sample: MetricCounts) -> Any:
        groups = slice_names(sample, self.metric.slice_by is not None, f"metric {self.name!r}")
        arms = (arm_counts(sample.baseline, "baseline"), arm_counts(sample.canary, "canary"))
        if not any(has_counts(arm) for arm in arms):
            return None
        if groups is not None and not groups:
            return None
        return ("ratio", tuple(groups) if groups is not None else None)

    def _rules(self, layout: Any) -> tuple[RowRules, list[int]]:
        groups = list(layout[1]) if layout[1] is not None else None
        columns, pairs = _ratio_columns(groups)
        canary = [4 * g + 3 for g in range(len(groups) + 1 if groups else 1)]
        return RowRules.build(columns, pairs), canary

    def _row(self, sample: MetricCounts, layout: Any) -> list[float]:
        return _ratio_row(sample, layout[1], f"metric {self.name!r}")

    def _row_json(self, value: Any, layout: Any) -> list[float]:
        return json_ratio_row(value, layout[1])

    def _create_tests(self, reference: FloatArray) -> MetricTests:
        layout = self._pending_layout
        groups = list(layout[1]) if layout[1] is not None else None
        n_groups = len(groups) if groups else 1
        width = 4 * (n_groups + 1) if groups else 4  # sliced: the later slices' columns too
        labels: list[str | None]
        if groups is None:
            labels, shares = [None], np.array([1.0])
            members: list[list[int]] = [[0]]
        else:
            labels = [None, *groups]
            shares = np.array([0.5] + [0.5 / n_groups] * n_groups)
            # the pooled test also counts the slices that appeared after setup (index n_groups)
            members = [list(range(n_groups + 1))] + [[g] for g in range(n_groups)]
        n_tests = len(labels)
        xc, nc, xb, nb = (np.zeros((width, n_tests)) for _ in range(4))
        for t, groups_of_test in enumerate(members):
            for g in groups_of_test:
                base = 4 * g
                nb[base + 1, t] = 1.0
                nc[base + 3, t] = 1.0
                if self.null.complement:
                    xb[base + 1, t], xb[base, t] = 1.0, -1.0
                    xc[base + 3, t], xc[base + 2, t] = 1.0, -1.0
                else:
                    xb[base, t] = 1.0
                    xc[base + 2, t] = 1.0
        alphas = self.alpha * self.share * shares
        if self.null.test == "count":
            design = np.full(n_tests, count_design_effect(self.null, self.metric.tolerance))
        else:
            design = np.empty(n_tests)
            for t in range(n_tests):
                x_b = float(reference @ xb[:, t])
                n_b = float(reference @ nb[:, t])
                rate = (x_b + 0.5) / (n_b + 1.0)
                design[t] = contrast_design_effect(self.null, rate)
        self._pending_runner = ArmComparison(
            self.null, (xc, nc, xb, nb), alphas, design, self.power
        )
        return MetricTests(labels=labels, shares=shares, extra={"runner": self._pending_runner})

    def _evaluate(self, increments: FloatArray, setup: MetricTests | None) -> Evaluation:
        tests = setup if setup is not None else self.tests
        assert tests is not None
        runner: ArmComparison = tests.extra["runner"]
        log_e_tests, info, block = runner.advance(increments)
        log_e = log_average(log_e_tests, tests.shares)
        ratio = info / runner.required
        progress = np.minimum(ratio.min(axis=1), 1.0)
        return Evaluation(
            log_e=log_e,
            log_e_tests=log_e_tests,
            enough=progress >= 1.0,
            progress=progress,
            commit=lambda row: runner.commit(block, row),
        )

    def detail(self, test: int) -> Detail:
        assert self.tests is not None
        assert self.last is not None
        runner: ArmComparison = self.tests.extra["runner"]
        alpha = self.alpha * self.share * float(self.tests.shares[test])
        estimate, interval = runner.describe(self.last, test, alpha)
        return Detail(
            slice=self.tests.labels[test],
            estimate=estimate,
            interval=interval,
            measure=runner.measure,
        )
