"""A fairness check of the policy (selection-rate parity across groups) as tests.

Why on the canary's own groups. The four-fifths rule is a property of one model's decisions:
the canary passes it or not, whatever the baseline does; the parity-gap rule compares the
canary's gap with the baseline's. Both become contrast tests over pairs of groups
(``canary.stats.fairness``); the check is one e-process, attributed to the group with the most
evidence against it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from canary.analysis.checks import RowRules
from canary.analysis.json_rows import json_slice_rows
from canary.analysis.metric_base import (
    Detail,
    Evaluation,
    MetricAnalysis,
    MetricTests,
    StructuralError,
    arm_counts,
    has_counts,
    slice_names,
)
from canary.analysis.nulls import DETECT_RELATIVE
from canary.analysis.snapshot import MetricCounts
from canary.core.policy import FairnessCheck
from canary.stats import fairness as fair
from canary.stats.combine import log_average
from canary.stats.normal import DEFAULT_CONTRAST_GRID, ContrastTests
from canary.stats.samplesize import min_information

FloatArray = NDArray[np.float64]


GAP_DETECT_FLOOR = 0.02


class FairnessAnalysis(MetricAnalysis):
    """Selection-rate parity of the canary across the groups present at setup (two or more).

    One reported test: the check's e-process (the average of its ratio and gap parts when
    both are set). The slice named in a breach is the disadvantaged group of the pair with
    the most evidence.
    """

    def __init__(self, check: FairnessCheck, share: float, alpha: float, power: float) -> None:
        super().__init__(check.name, share, alpha, power)
        self.check = check

    def _layout_from(self, sample: MetricCounts) -> Any:
        groups = slice_names(sample, True, f"fairness check {self.name!r}")
        assert groups is not None
        base = arm_counts(sample.baseline, "baseline")
        can = arm_counts(sample.canary, "canary")
        if len(groups) < 2 or not (has_counts(base) or has_counts(can)):
            return None
        return ("fairness", tuple(groups))

    def _rules(self, layout: Any) -> tuple[RowRules, list[int]]:
        groups = list(layout[1])
        g_n = len(groups)
        columns: list[str] = []
        for arm in ("canary", "baseline"):
            for group in groups:
                columns += [f"{arm} slice {group!r} positives", f"{arm} slice {group!r} total"]
        pairs = [(2 * i, 2 * i + 1) for i in range(2 * g_n)]
        return RowRules.build(columns, pairs), [2 * g + 1 for g in range(g_n)]

    def _row(self, sample: MetricCounts, layout: Any) -> list[float]:
        groups = list(layout[1])
        row: list[float] = []
        for arm_sample in (sample.canary, sample.baseline):
            arm = arm_counts(arm_sample, "arm")
            if arm.counts is not None:
                raise StructuralError("a fairness check needs counts per slice")
            slices = arm.slices or {}
            for group in groups:
                counts = slices.get(group)
                row += [counts.events, counts.total] if counts is not None else [0.0, 0.0]
        return row

    def _row_json(self, value: Any, layout: Any) -> list[float]:
        return json_slice_rows(value, layout[1], ("canary", "baseline"))

    def _create_tests(self, reference: FloatArray) -> MetricTests:
        layout = self._pending_layout
        groups = list(layout[1])
        g_n = len(groups)
        width = 4 * g_n
        x_map = np.zeros((width, 2 * g_n))
        n_map = np.zeros((width, 2 * g_n))
        for p in range(2 * g_n):
            x_map[2 * p, p] = 1.0
            n_map[2 * p + 1, p] = 1.0
        parts: list[tuple[str, ContrastTests, fair.PairContrasts, FloatArray]] = []
        both = self.check.min_ratio is not None and self.check.max_gap_increase is not None
        part_share = 0.5 if both else 1.0
        base_rates = fair.selection_rates(reference[2 * g_n :: 2], reference[2 * g_n + 1 :: 2])
        top_rate = float(np.nanmax(base_rates)) if np.any(np.isfinite(base_rates)) else 0.5
        grid = DEFAULT_CONTRAST_GRID
        if self.check.min_ratio is not None:
            c = self.check.min_ratio
            spec = fair.ratio_contrasts(g_n, c)
            tests = ContrastTests(spec.terms, spec.coefs, spec.offsets, 2 * g_n)
            design = max(c * max(1.0 - c, DETECT_RELATIVE) * top_rate, GAP_DETECT_FLOOR / 4)
            a = self.alpha * self.share * part_share / len(spec.pairs)
            need = min_information(grid.offsets, grid.log_weights, a, design, self.power)
            parts.append(("ratio", tests, spec, np.full(spec.terms.shape[0], need)))
        if self.check.max_gap_increase is not None:
            delta = self.check.max_gap_increase
            spec = fair.gap_contrasts(g_n, delta)
            tests = ContrastTests(spec.terms, spec.coefs, spec.offsets, 2 * g_n)
            design = max(delta, GAP_DETECT_FLOOR)
            a = self.alpha * self.share * part_share / len(spec.pairs)
            need = min_information(grid.offsets, grid.log_weights, a, design, self.power)
            parts.append(("gap", tests, spec, np.full(spec.terms.shape[0], need)))
        return MetricTests(
            labels=[None],
            shares=np.array([1.0]),
            extra={"x": x_map, "n": n_map, "parts": parts, "groups": groups},
        )

    @staticmethod
    def _pairs_log_e(spec: fair.PairContrasts, log_e: FloatArray) -> FloatArray:
        if spec.terms.shape[1] == 2:  # ratio part: one contrast per pair
            return log_e
        return fair.min_per_pair(log_e, spec.pair, len(spec.pairs))

    def _combine(
        self, per_part: list[tuple[FloatArray, FloatArray, FloatArray]]
    ) -> tuple[FloatArray, FloatArray]:
        part_logs = []
        progress_parts = []
        for log_pairs, info, need in per_part:
            n_pairs = log_pairs.shape[-1]
            part_logs.append(log_average(log_pairs, np.full(n_pairs, 1.0 / n_pairs)))
            progress_parts.append(np.minimum((info / need).min(axis=-1), 1.0))
        stacked = np.stack(part_logs, axis=-1)
        log_e = log_average(stacked, np.full(stacked.shape[-1], 1.0 / stacked.shape[-1]))
        progress = np.minimum.reduce(progress_parts)
        return log_e, progress

    def _evaluate(self, increments: FloatArray, setup: MetricTests | None) -> Evaluation:
        tests = setup if setup is not None else self.tests
        assert tests is not None
        x = increments @ tests.extra["x"]
        n = increments @ tests.extra["n"]
        blocks = []
        per_part = []
        for _kind, contrast, spec, need in tests.extra["parts"]:
            block = contrast.advance(x, n)
            blocks.append((contrast, block))
            per_part.append((self._pairs_log_e(spec, block.log_e), block.information, need))
        log_e, progress = self._combine(per_part)

        def commit(row: int) -> None:
            for contrast, block in blocks:
                contrast.commit(block, row)

        return Evaluation(
            log_e=log_e,
            log_e_tests=log_e[:, None],
            enough=progress >= 1.0,
            progress=progress,
            commit=commit,
        )

    def _test_states(self) -> list[Any]:
        assert self.tests is not None
        return [contrast.state() for _kind, contrast, _spec, _need in self.tests.extra["parts"]]

    def _restore_tests(self, states: list[Any]) -> None:
        assert self.tests is not None
        for (_kind, contrast, _spec, _need), state in zip(
            self.tests.extra["parts"], states, strict=True
        ):
            contrast.restore(state)

    def detail(self, test: int) -> Detail:
        """Estimate: the canary's lowest/highest selection-rate ratio of the worst pair (ratio
        part) or the increase of the parity gap over the baseline's (gap part)."""
        assert self.tests is not None
        assert self.last is not None
        groups: list[str] = self.tests.extra["groups"]
        g_n = len(groups)
        row = self.last
        c_rates = fair.selection_rates(row[0 : 2 * g_n : 2], row[1 : 2 * g_n : 2])
        b_rates = fair.selection_rates(row[2 * g_n :: 2], row[2 * g_n + 1 :: 2])
        best: tuple[float, str, int, ContrastTests, fair.PairContrasts] | None = None
        parts = self.tests.extra["parts"]
        for kind, contrast, spec, _need in parts:
            log_pairs = self._pairs_log_e(spec, contrast.log_evalue())
            index = int(np.argmax(log_pairs))
            if best is None or float(log_pairs[index]) > best[0]:
                best = (float(log_pairs[index]), kind, index, contrast, spec)
        assert best is not None
        _, kind, index, contrast, spec = best
        g, h = spec.pairs[index]
        alpha = self.alpha * self.share / len(parts) / len(spec.pairs)
        if kind == "ratio":
            c = float(spec.coefs[index, 0])
            s_h = float(c_rates[h])
            estimate = float(c_rates[g]) / s_h if np.isfinite(s_h) and s_h > 0 else None
            low, high = contrast.interval(index, alpha)
            measure = f"canary selection-rate ratio {groups[g]}/{groups[h]}"
            if low is None or high is None or not (np.isfinite(s_h) and s_h > 0):
                return Detail(
                    slice=groups[g], estimate=estimate, interval=(None, None), measure=measure
                )
            return Detail(
                slice=groups[g],
                estimate=estimate,
                # a ratio of rates is never negative, whatever the normal approximation says
                interval=(max(c - high / s_h, 0.0), c - low / s_h),
                measure=measure,
            )
        members = np.nonzero(spec.pair == index)[0]
        log_e = contrast.log_evalue()
        binding = int(members[np.argmin(log_e[members])])
        gap_c = fair.parity_gap(c_rates)
        gap_b = fair.parity_gap(b_rates)
        estimate = None if gap_c is None or gap_b is None else gap_c - gap_b
        delta = float(spec.offsets[binding])
        low, high = contrast.interval(binding, alpha)
        return Detail(
            slice=groups[h],
            estimate=estimate,
            interval=(None if low is None else low + delta, None if high is None else high + delta),
            measure="increase of the parity gap over the baseline's",
        )
