"""Count test: is the canary's event rate more than ``r0`` times the baseline's?

Why this construction. Each request of an arm is an event (an error, a slow response) with
some probability, and the load varies over time. Conditioning on the events of one interval
removes the load: given ``m`` events in an interval where the canary served a share
``rho = n_C / (n_C + n_B)`` of the requests, the number that came from the canary is
Binomial(m, theta(r)) with ``theta(r) = rho r / (rho r + 1 - rho)`` and ``r`` the ratio of the
canary's rate to the baseline's (Lindon & Malek 2022, rare-event Poisson view). The share is the
*realised* share of that interval, so a ramp (1% -> 5% -> 25% -> 50%) or a burst that hits both
arms changes nothing: each interval is its own stratum. The statistic of one interval,

    f_k(r) = theta_k(r)^x_C (1 - theta_k(r))^x_B / (theta_k(r0)^x_C (1 - theta_k(r0))^x_B),

has expectation at most one under any ``r <= r0`` for Poisson counts, and also for Bernoulli
requests at any event frequency: E[A^x] = (1 + q (A - 1))^n <= exp(n q (A - 1)) because
log(1 + y) <= y, and the exponents cancel at the null boundary. The product over intervals is
then a test supermartingale for every alternative ``r``, and a mixture over a grid of
alternatives above ``r0`` is an e-process for "canary no worse than r0 times the baseline".

Everything is vectorised over a leading block of intervals (``K``) and a set of tests (``T``),
and the mixing happens on a fixed grid, so one interval costs a few array operations whatever
the number of tests: the replay speed target depends on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# Mixing distribution over b = log(r / r0), the log rate ratio beyond the null: a normal prior
# N(0.5, 0.6^2) restricted to 10 points between r/r0 = 1.05 and 10. Tuned by simulation of
# the 1% -> 2% error scenario at a 5% share (docs/statistics.md, "Tuning the mixture"): it
# puts most mass between a 1.3x and a 4x regression and costs about 1.2x the requests of an
# oracle SPRT that knows the true ratio, while keeping weight on 1.05x and 10x regressions.
GRID_RATIO_LOW = 1.05
GRID_RATIO_HIGH = 10.0
GRID_POINTS = 10
GRID_CENTER = 0.5
GRID_SD = 0.6


@dataclass(frozen=True)
class MixingGrid:
    """Points ``offsets`` (log ratio beyond the null, all > 0) and their log weights."""

    offsets: FloatArray
    log_weights: FloatArray

    @classmethod
    def normal(cls, low: float, high: float, points: int, center: float, sd: float) -> MixingGrid:
        """A normal prior on the log ratio, on ``points`` points from ``low`` to ``high``."""
        offsets = np.linspace(math.log(low), math.log(high), points)
        log_w = -0.5 * ((offsets - center) / sd) ** 2
        log_w = log_w - float(np.log(np.exp(log_w).sum()))
        return cls(offsets=offsets, log_weights=log_w)


DEFAULT_GRID = MixingGrid.normal(GRID_RATIO_LOW, GRID_RATIO_HIGH, GRID_POINTS, GRID_CENTER, GRID_SD)


def logsumexp_rows(values: FloatArray, log_weights: FloatArray) -> FloatArray:
    """log(sum_j exp(log_weights_j + values[..., j])) along the last axis, stably."""
    return logsumexp_into(values + log_weights)


def logsumexp_into(shifted: FloatArray) -> FloatArray:
    """``logsumexp_rows`` of values that already hold their log weights, computed in their
    own memory (which it overwrites): the same numbers without allocating (and faulting in)
    three more arrays the size of a block's grid."""
    top = shifted.max(axis=-1)
    top = np.where(np.isfinite(top), top, 0.0)
    shifted -= top[..., None]
    np.exp(shifted, out=shifted)
    result: FloatArray = top + np.log(shifted.sum(axis=-1))
    return result


def realised_share(n_canary: FloatArray, n_baseline: FloatArray) -> FloatArray:
    """Canary share of the requests of each interval; 0 where neither arm had requests."""
    total = n_canary + n_baseline
    share: FloatArray = np.divide(
        n_canary, total, out=np.zeros_like(total, dtype=np.float64), where=total > 0
    )
    return share


@dataclass(frozen=True)
class CountBlock:
    """Evidence after each interval of a block: log-likelihoods (K, T, C), information and
    log e-values (K, T)."""

    loglik: FloatArray
    information: FloatArray
    log_e: FloatArray
    history: FloatArray  # (K, T, 3): x_C, m, rho of each interval
    exposure: FloatArray  # (K, T): the information per unit adverse rate (see below)


class CountRatioTests:
    """A set of ``T`` count tests with their null ratios, updated one block at a time.

    The state is the log-likelihood of every test at its null and at every grid ratio above
    it, the Fisher information about log r that the minimum-sample rule reads, and the
    per-interval counts (for the bounds shown to people, computed on demand). It only ever
    grows by sums of per-interval terms, in the same order whatever the blocking, so feeding
    intervals one by one or in blocks gives the same floating-point numbers.
    """

    def __init__(self, null_ratios: FloatArray, grid: MixingGrid = DEFAULT_GRID) -> None:
        r0 = np.asarray(null_ratios, dtype=np.float64)
        if r0.ndim != 1 or np.any(r0 <= 0):
            raise ValueError("null ratios must be a vector of positive numbers")
        self.grid = grid
        self.null_ratios = r0
        log_r0 = np.log(r0)[:, None]
        # columns: [null, test grid (J)]
        self._log_r: FloatArray = np.concatenate([log_r0, log_r0 + grid.offsets[None, :]], axis=1)
        self._r_minus_1: FloatArray = np.expm1(self._log_r)
        self._one_null = bool(np.all(r0 == r0[0]))  # every test has the same null ratio
        self._test_cols = slice(1, 1 + grid.offsets.size)
        self.loglik: FloatArray = np.zeros_like(self._log_r)
        self.information: FloatArray = np.zeros(r0.size)
        # sum of n_k theta0 (1 - theta0) over intervals, n_k the requests of both arms: the
        # information the test would have if a fraction q of requests were adverse is
        # q * exposure. It lets a caller size a sample at a floor rate when events are rare.
        self.exposure: FloatArray = np.zeros(r0.size)
        # per-interval (x_C, m, rho) of every test, for intervals shown to people on demand:
        # rows [0, _rows) of one buffer that doubles when full. One small array per tick
        # would cost its ~100-byte header per tick and per test, for the rollout's life.
        self._buffer: FloatArray = np.empty((16, r0.size, 3))
        self._rows = 0

    @property
    def size(self) -> int:
        return int(self.null_ratios.size)

    def advance(
        self,
        x_canary: FloatArray,
        n_canary: FloatArray,
        x_baseline: FloatArray,
        n_baseline: FloatArray,
    ) -> CountBlock:
        """Evidence after each interval of a block (arrays of shape (K, T) of increments).

        Pure: the state changes only when the block is committed, so a caller can look at the
        whole block first and keep only the intervals up to a decision.
        """
        rho = realised_share(n_canary, n_baseline)
        events = x_canary + x_baseline
        # log f_k(r) up to a term free of r: x_C log r - m log(1 + rho (r - 1))
        if self._one_null and rho.shape[-1] > 1 and bool(np.all(rho == rho[..., :1])):
            # every test sees the same share (a histogram's bounds): one log1p per interval
            # and grid point, the very same numbers, broadcast to every test
            spread = np.log1p(rho[..., :1, None] * self._r_minus_1[:1])
        else:
            spread = np.log1p(rho[..., None] * self._r_minus_1)
        # the state, then each interval's increment, summed in place down the intervals
        steps = np.empty((x_canary.shape[0] + 1, *self.loglik.shape))
        steps[0] = self.loglik
        np.multiply(x_canary[..., None], self._log_r, out=steps[1:])
        steps[1:] -= events[..., None] * spread
        np.cumsum(steps, axis=0, out=steps)
        loglik = steps[1:]
        theta0 = rho * self.null_ratios / (1.0 + rho * (self.null_ratios - 1.0))
        info = np.cumsum(
            np.concatenate([self.information[None], events * theta0 * (1.0 - theta0)]), axis=0
        )[1:]
        beyond = loglik[..., self._test_cols] - loglik[..., :1]
        beyond += self.grid.log_weights
        log_e = logsumexp_into(beyond)
        exposure = np.cumsum(
            np.concatenate(
                [self.exposure[None], (n_canary + n_baseline) * theta0 * (1.0 - theta0)]
            ),
            axis=0,
        )[1:]
        history = np.stack([x_canary, events, rho], axis=-1)
        return CountBlock(
            loglik=loglik, information=info, log_e=log_e, history=history, exposure=exposure
        )

    def commit(self, block: CountBlock, row: int) -> None:
        """Keep the state after interval ``row`` of ``block`` (-1: the last)."""
        self.loglik = block.loglik[row].copy()
        self.information = block.information[row].copy()
        self.exposure = block.exposure[row].copy()
        upto = block.history.shape[0] if row == -1 else row + 1
        self._keep_history(block.history[:upto])

    def _keep_history(self, rows: FloatArray) -> None:
        end = self._rows + rows.shape[0]
        if end > self._buffer.shape[0]:
            grown = np.empty((max(end, 2 * self._buffer.shape[0]), *self._buffer.shape[1:]))
            grown[: self._rows] = self._buffer[: self._rows]
            self._buffer = grown
        self._buffer[self._rows : end] = rows
        self._rows = end

    @property
    def history(self) -> FloatArray:
        """Every committed interval's (x_C, m, rho), shape (T, K, 3): a view, not a copy."""
        return self._buffer[: self._rows]

    def update(
        self,
        x_canary: FloatArray,
        n_canary: FloatArray,
        x_baseline: FloatArray,
        n_baseline: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        """Advance and commit a whole block; return log e-values and information, (K, T)."""
        block = self.advance(x_canary, n_canary, x_baseline, n_baseline)
        self.commit(block, -1)
        return block.log_e, block.information

    def log_evalue(self) -> FloatArray:
        """Current log e-value of every test."""
        return logsumexp_rows(
            self.loglik[:, self._test_cols] - self.loglik[:, :1], self.grid.log_weights
        )

    def ratio_interval(self, test: int, alpha: float) -> tuple[float | None, float | None]:
        """Confidence bounds for the rate ratio of one test, each at level 1 - alpha.

        The lower bound is the smallest r' that the test's own mixture (the same grid, above
        r') does not reject at 1/alpha, so it lies above r0 exactly when the test rejected
        r0; the upper bound mirrors it with the grid below r'. Computed on demand from the
        stored intervals (bisection on log r in [1/1000, 1000]); None is an unbounded side.
        """
        data = np.ascontiguousarray(self.history[:, test, :])  # (T, 3)
        x_total = float(data[:, 0].sum())
        events, rho = data[:, 1], data[:, 2]
        offsets, log_w = self.grid.offsets, self.grid.log_weights
        log_threshold = math.log(1.0 / alpha)

        def loglik(log_r: FloatArray) -> FloatArray:
            result: FloatArray = x_total * log_r - events @ np.log1p(
                rho[:, None] * np.expm1(log_r)[None, :]
            )
            return result

        def log_e(log_r: float, sign: float) -> float:
            points = np.concatenate([[log_r], log_r + sign * offsets])
            values = loglik(points)
            return float(logsumexp_rows((values[1:] - values[0])[None], log_w)[0])

        def solve(sign: float) -> float | None:
            # sign +1: E decreases in r; find where it drops below the threshold
            low, high = math.log(1e-3), math.log(1e3)
            if sign > 0:
                if log_e(low, sign) < log_threshold:
                    return None
                if log_e(high, sign) >= log_threshold:
                    return math.exp(high)
            else:
                if log_e(high, sign) < log_threshold:
                    return None
                if log_e(low, sign) >= log_threshold:
                    return math.exp(low)
            for _ in range(50):
                mid = 0.5 * (low + high)
                rejected = log_e(mid, sign) >= log_threshold
                if (sign > 0) == rejected:
                    low = mid
                else:
                    high = mid
            return math.exp(high if sign > 0 else low)

        return solve(+1.0), solve(-1.0)

    def state(self) -> dict[str, list[list[float]] | list[float] | list[list[list[float]]]]:
        """The JSON-serialisable state (everything that is not configuration)."""
        history = self.history
        return {
            "loglik": self.loglik.tolist(),
            "information": self.information.tolist(),
            "exposure": self.exposure.tolist(),
            "history": history.tolist(),
        }

    def restore(
        self, state: dict[str, list[list[float]] | list[float] | list[list[list[float]]]]
    ) -> None:
        loglik = np.asarray(state["loglik"], dtype=np.float64)
        information = np.asarray(state["information"], dtype=np.float64)
        history = np.asarray(state["history"], dtype=np.float64).reshape(-1, self.size, 3)
        if loglik.shape != self.loglik.shape or information.shape != self.information.shape:
            raise ValueError("state does not match this set of tests")
        self.loglik = loglik
        self.information = information
        self.exposure = np.asarray(
            state.get("exposure", np.zeros(self.size)), dtype=np.float64
        ).reshape(self.size)
        self._buffer = np.empty((max(16, history.shape[0]), self.size, 3))
        self._rows = 0
        self._keep_history(history)
