"""Canary-against-baseline tests of one null on many adverse counts, count or contrast.

Why one class. A ratio metric (pooled and per slice) and a histogram (per bound) both compare
adverse counts of the two arms under one canonical null (``canary.analysis.nulls``); this class
picks the count test or the contrast test the null calls for, maps raw count columns to the
tests' inputs with matrices, and sizes each test's minimum sample.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from canary.analysis.nulls import Null
from canary.stats.countratio import DEFAULT_GRID, CountRatioTests
from canary.stats.normal import DEFAULT_CONTRAST_GRID, ContrastTests
from canary.stats.samplesize import min_information

FloatArray = NDArray[np.float64]


class ArmComparison:
    """Runs a set of (canary adverse, canary total, baseline adverse, baseline total) tests
    with one null, through the count test or the contrast test as the null requires."""

    def __init__(
        self,
        null: Null,
        matrices: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
        alphas: FloatArray,
        design: FloatArray,
        power: float,
        sized: NDArray[np.bool_] | None = None,
    ) -> None:
        """``sized`` marks the tests whose minimum information is computed (the rest: inf)."""
        self.null = null
        self.xc, self.nc, self.xb, self.nb = matrices
        n_tests = self.xc.shape[1]
        self.count: CountRatioTests | None = None
        self.contrast: ContrastTests | None = None
        if null.test == "count":
            self.count = CountRatioTests(np.full(n_tests, null.c1))
            grid = DEFAULT_GRID
            offsets, log_weights = grid.offsets, grid.log_weights
        else:
            terms = np.array([[2 * t, 2 * t + 1] for t in range(n_tests)], dtype=np.intp)
            coefs = np.tile(np.array([1.0, -null.c1]), (n_tests, 1))
            # the canary's variance comes from the baseline's rate through the null
            source = np.arange(2 * n_tests, dtype=np.intp)
            source[0::2] += 1
            slope = np.ones(2 * n_tests)
            slope[0::2] = null.c1
            intercept = np.zeros(2 * n_tests)
            intercept[0::2] = null.c0
            self.contrast = ContrastTests(
                terms.reshape(-1, 2),
                coefs,
                np.full(n_tests, null.c0),
                2 * n_tests,
                source=source,
                slope=slope,
                intercept=intercept,
            )
            cgrid = DEFAULT_CONTRAST_GRID
            offsets, log_weights = cgrid.offsets, cgrid.log_weights
        wanted = np.ones(n_tests, dtype=bool) if sized is None else sized
        self.required = np.array(
            [
                min_information(offsets, log_weights, a, d, power) if want else math.inf
                for a, d, want in zip(alphas.tolist(), design.tolist(), wanted, strict=True)
            ]
        )

    def advance(self, increments: FloatArray) -> tuple[FloatArray, FloatArray, Any]:
        """log e-values and information (K, T) and the block to commit."""
        xc = increments @ self.xc
        nc = increments @ self.nc
        xb = increments @ self.xb
        nb = increments @ self.nb
        if self.count is not None:
            block = self.count.advance(xc, nc, xb, nb)
            return block.log_e, block.information, block
        assert self.contrast is not None
        k = increments.shape[0]
        n_tests = xc.shape[1]
        x = np.empty((k, 2 * n_tests))
        n = np.empty((k, 2 * n_tests))
        x[:, 0::2], x[:, 1::2] = xc, xb
        n[:, 0::2], n[:, 1::2] = nc, nb
        cblock = self.contrast.advance(x, n)
        return cblock.log_e, cblock.information, cblock

    def state(self) -> dict[str, Any]:
        tests = self.count if self.count is not None else self.contrast
        assert tests is not None
        return dict(tests.state())

    def restore(self, state: dict[str, Any]) -> None:
        if self.count is not None:
            self.count.restore(state)
        else:
            assert self.contrast is not None
            self.contrast.restore(state)

    def commit(self, block: Any, row: int) -> None:
        if self.count is not None:
            self.count.commit(block, row)
        else:
            assert self.contrast is not None
            self.contrast.commit(block, row)

    def log_e_now(self) -> tuple[FloatArray, FloatArray]:
        if self.count is not None:
            return self.count.log_evalue(), self.count.information
        assert self.contrast is not None
        return self.contrast.log_evalue(), self.contrast.information

    def sums(self, row: FloatArray, test: int) -> tuple[float, float, float, float]:
        return (
            float(row @ self.xc[:, test]),
            float(row @ self.nc[:, test]),
            float(row @ self.xb[:, test]),
            float(row @ self.nb[:, test]),
        )

    @property
    def measure(self) -> str:
        """What ``describe``'s estimate is, in words people read in an alert."""
        if self.count is not None:
            return "rate ratio canary/baseline"
        if self.null.c1 == 1.0:
            return "difference of rates canary - baseline"
        return "ratio of rates canary/baseline"

    def describe(
        self, row: FloatArray, test: int, alpha: float
    ) -> tuple[float | None, tuple[float | None, float | None]]:
        """Estimate and interval shown to people for one test (see docs/statistics.md)."""
        xc, nc, xb, nb = self.sums(row, test)
        if self.count is not None:
            ratio = None
            if nc > 0 and nb > 0 and xb > 0:
                ratio = (xc / nc) / (xb / nb)
            return ratio, self.count.ratio_interval(test, alpha)
        assert self.contrast is not None
        excess = self.contrast.estimate(test)
        low, high = self.contrast.interval(test, alpha)
        c1, c0 = self.null.c1, self.null.c0
        if c1 == 1.0:  # absolute tolerance: difference of the metric's own rates
            sign = -1.0 if self.null.complement else 1.0

            def conv(value: float | None) -> float | None:
                return None if value is None else sign * (value + c0)

            lo, hi = conv(low), conv(high)
            if sign < 0:
                lo, hi = hi, lo
            return conv(excess), (lo, hi)
        # lower with a relative tolerance: ratio of the metric's own rates, p_C / p_B
        p_b = 1.0 - xb / nb if nb > 0 else None
        if p_b is None or p_b <= 0:
            return None, (None, None)

        def as_ratio(value: float | None) -> float | None:
            return None if value is None else c1 - value / p_b

        return as_ratio(excess), (as_ratio(high), as_ratio(low))
