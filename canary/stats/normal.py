"""Contrast test: is a linear contrast of proportions above zero?

Why this construction. Frequent events (accuracy near 0.9, selection rates near 0.3) and
nulls with an additive part (accuracy may drop by 0.02) do not fit the count test: the first
wastes most of the information in a Poisson view, the second depends on the unknown baseline
rate. The contrast test works on the difference of proportions instead (the normal-mixture
mSPRT of Johari, Pekelis & Walsh, made exact for Bernoulli counts). In each interval ``k`` the
contrast

    c_k = sum_a coef_a * x_ak / n_ak - c0

(canary minus ``c1`` times baseline, or one group of the canary against another) has mean at
most zero under the null. For each point ``d_j`` of a grid the interval contributes the factor

    exp(lambda c_k - sum_a psi_a(coef_a lambda)),  lambda = d_j / V_k,

where ``V_k = sum_a coef_a^2 q_a (1 - q_a) / n_ak`` and ``psi_a`` is the centred log moment
generating function of a binomial proportion with rate ``q_a``: its expectation is exactly
one at the null boundary (at most one inside the null), at any sample size, where a normal
approximation would be too optimistic for a handful of rare events per interval. ``lambda`` is
what the normal approximation would pick for an effect ``d_j``, so with many observations the
test is the familiar mSPRT. Each interval is a stratum of its own, so a ramp or a drift that
moves both arms cannot create a difference (Simpson's paradox would, with cumulative
proportions). The e-process is the mixture over the grid of the products of factors.

The rates ``q_a`` are predictable: each comes from a *source* proportion over the ``WINDOW``
intervals before the current one (with one pseudo-observation at 1/2). A recent window, not the
whole history, because rates drift (accuracy over a day) while the canary's share grows. A
canary arm takes its rate from the baseline through the null (``q_C = c1 q_B + c0``): precise,
and independent of the canary's own counts, so an interval's statistic is increasing in them
(more harm never lowers the e-value). Window sums are taken over the same values in
the same order whatever the blocking, so results do not depend on it. ``S = sum c_k / V_k`` and
``I = sum 1 / V_k`` are kept too: I is the information the minimum sample is measured in, and
S / I the estimate shown to people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from canary.stats.countratio import logsumexp_rows

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

# Rates used in variances and moment generating functions stay inside [floor, 1 - floor].
RATE_FLOOR = 1e-4

# Intervals in the window that estimates the variance of each proportion (5 min at 15 s).
WINDOW = 20

# Mixing grid over the excess d of the contrast (probability units): 10 points from 0.003 to
# 0.3, normal weights on log d centred at 0.03 (a three-point drop in accuracy) with sd 1.2,
# so drops of 0.01 to 0.15 all cost little.
GRID_LOW = 0.003
GRID_HIGH = 0.3
GRID_POINTS = 10
GRID_LOG_CENTER = math.log(0.03)
GRID_LOG_SD = 1.2


@dataclass(frozen=True)
class ContrastGrid:
    """Points ``offsets`` (excess of the contrast, all > 0) and their log weights."""

    offsets: FloatArray
    log_weights: FloatArray

    @classmethod
    def log_normal(
        cls, low: float, high: float, points: int, log_center: float, log_sd: float
    ) -> ContrastGrid:
        offsets = np.exp(np.linspace(math.log(low), math.log(high), points))
        log_w = -0.5 * ((np.log(offsets) - log_center) / log_sd) ** 2
        log_w = log_w - float(np.log(np.exp(log_w).sum()))
        return cls(offsets=offsets, log_weights=log_w)


DEFAULT_CONTRAST_GRID = ContrastGrid.log_normal(
    GRID_LOW, GRID_HIGH, GRID_POINTS, GRID_LOG_CENTER, GRID_LOG_SD
)


@dataclass(frozen=True)
class ContrastBlock:
    """Evidence after each interval of a block: S, I, log e-values (K, T), the grid's
    log-likelihoods (K, T, J), cumulative counts per proportion (K, P) and the windows."""

    score: FloatArray
    information: FloatArray
    events: FloatArray
    totals: FloatArray
    log_e: FloatArray
    # (WINDOW + K, P): the window before the block, then the block's intervals; the window
    # after interval k is rows k + 1 .. k + WINDOW (cut at commit, not for every interval)
    all_x: FloatArray
    all_n: FloatArray
    loglik: FloatArray  # (K, T, J) log of each grid point's product of factors


class ContrastTests:
    """``T`` contrast tests over ``P`` proportions, updated one block of intervals at a time.

    ``terms`` (T, A) index the proportions each contrast uses (A terms at most, padded with any
    index and a zero coefficient), ``coefs`` (T, A) their coefficients, ``offsets`` (T,) the
    constant ``c0``. Proportion ``a`` takes its variance from the rate of proportion
    ``source[a]`` mapped by ``slope[a] * rate + intercept[a]`` (default: its own rate). The
    state is the log of each grid point's product of factors, S and I per test, and the
    cumulative counts and the recent window per proportion.
    """

    def __init__(
        self,
        terms: IntArray,
        coefs: FloatArray,
        offsets: FloatArray,
        n_proportions: int,
        grid: ContrastGrid = DEFAULT_CONTRAST_GRID,
        source: IntArray | None = None,
        slope: FloatArray | None = None,
        intercept: FloatArray | None = None,
    ) -> None:
        self.terms = np.asarray(terms, dtype=np.intp)
        self.coefs = np.asarray(coefs, dtype=np.float64)
        self.offsets = np.asarray(offsets, dtype=np.float64)
        if self.terms.shape != self.coefs.shape or self.terms.ndim != 2:
            raise ValueError("terms and coefs must both have shape (tests, terms)")
        if self.offsets.shape != (self.terms.shape[0],):
            raise ValueError("one offset per test")
        self.grid = grid
        self.n_proportions = n_proportions
        self.active: NDArray[np.bool_] = self.coefs != 0
        self.loglik: FloatArray = np.zeros((self.terms.shape[0], grid.offsets.size))
        self.score: FloatArray = np.zeros(self.terms.shape[0])  # S
        self.information: FloatArray = np.zeros(self.terms.shape[0])  # I
        self.events: FloatArray = np.zeros(n_proportions)
        self.totals: FloatArray = np.zeros(n_proportions)
        self.source = (
            np.arange(n_proportions, dtype=np.intp)
            if source is None
            else np.asarray(source, dtype=np.intp)
        )
        self.slope = np.ones(n_proportions) if slope is None else np.asarray(slope, float)
        self.intercept = (
            np.zeros(n_proportions) if intercept is None else np.asarray(intercept, float)
        )
        self.recent_x: FloatArray = np.zeros((WINDOW, n_proportions))
        self.recent_n: FloatArray = np.zeros((WINDOW, n_proportions))

    @property
    def size(self) -> int:
        return int(self.terms.shape[0])

    def advance(self, x: FloatArray, n: FloatArray) -> ContrastBlock:
        """Evidence after each interval of a block: ``x``, ``n`` (K, P) are increments per
        proportion. Pure: the state changes only on commit."""
        k = x.shape[0]
        cum_x = np.cumsum(np.concatenate([self.events[None], x]), axis=0)
        cum_n = np.cumsum(np.concatenate([self.totals[None], n]), axis=0)
        # window sums over the WINDOW intervals before each one: (K, P)
        all_x = np.concatenate([self.recent_x, x])
        all_n = np.concatenate([self.recent_n, n])
        win_x = sliding_window_view(all_x, WINDOW, axis=0)[:k].sum(axis=-1)
        win_n = sliding_window_view(all_n, WINDOW, axis=0)[:k].sum(axis=-1)
        rate = (win_x + 0.5) / (win_n + 1.0)
        var_rate = np.clip(self.slope * rate[:, self.source] + self.intercept, 0.0, 1.0)
        var_rate = np.clip(var_rate, RATE_FLOOR, 1.0 - RATE_FLOOR)
        p_now = np.divide(x, n, out=np.zeros_like(x), where=n > 0)

        n_t = n[:, self.terms]  # (K, T, A)
        usable = np.all((n_t > 0) | ~self.active, axis=-1)  # every term observed
        safe_n = np.where(n_t > 0, n_t, 1.0)
        q_t = var_rate[:, self.terms]
        variance = np.sum(self.coefs**2 * q_t * (1.0 - q_t) / safe_n, axis=-1)
        contrast = np.sum(self.coefs * p_now[:, self.terms], axis=-1) - self.offsets
        inv_v = np.where(usable, 1.0 / np.where(variance > 0, variance, 1.0), 0.0)
        # exact Bernoulli factors: lambda_j = d_j / V, minus the log-mgf of each term
        lam = inv_v[..., None] * self.grid.offsets  # (K, T, J)
        step = self.coefs[None, :, :, None] * lam[:, :, None, :]
        step /= safe_n[..., None]
        q4 = q_t[..., None]
        # log(1 - q + q e^u) - u q; past u = 50 the first term is u + log q to 1e-18
        # (computed in place, array by array: the same numbers as the plain expressions)
        big = step > 50.0
        log_mgf = np.minimum(step, 50.0)
        np.expm1(log_mgf, out=log_mgf)
        log_mgf *= q4
        np.log1p(log_mgf, out=log_mgf)
        if big.any():
            log_mgf = np.where(big, step + np.log(q4), log_mgf)
        step *= q4
        log_mgf -= step
        psi = np.einsum("ktaj,kta->ktj", log_mgf, safe_n * self.active)
        # the state, then each interval's increment (zero where a term has no data)
        steps = np.empty((k + 1, *self.loglik.shape))
        steps[0] = self.loglik
        np.multiply(lam, contrast[..., None], out=steps[1:])
        steps[1:] -= psi
        steps[1:][~usable] = 0.0
        np.cumsum(steps, axis=0, out=steps)
        loglik = steps[1:]

        score = np.cumsum(np.concatenate([self.score[None], contrast * inv_v]), axis=0)[1:]
        info = np.cumsum(np.concatenate([self.information[None], inv_v]), axis=0)[1:]
        return ContrastBlock(
            score=score,
            information=info,
            events=cum_x[1:],
            totals=cum_n[1:],
            log_e=logsumexp_rows(loglik, self.grid.log_weights),
            all_x=all_x,
            all_n=all_n,
            loglik=loglik,
        )

    def commit(self, block: ContrastBlock, row: int) -> None:
        """Keep the state after interval ``row`` of ``block``."""
        self.loglik = block.loglik[row].copy()
        self.score = block.score[row].copy()
        self.information = block.information[row].copy()
        self.events = block.events[row].copy()
        self.totals = block.totals[row].copy()
        end = (row if row >= 0 else block.score.shape[0] + row) + 1 + WINDOW
        self.recent_x = block.all_x[end - WINDOW : end].copy()
        self.recent_n = block.all_n[end - WINDOW : end].copy()

    def update(self, x: FloatArray, n: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Advance and commit a whole block; return log e-values and information, (K, T)."""
        block = self.advance(x, n)
        self.commit(block, -1)
        return block.log_e, block.information

    def log_evalue(self) -> FloatArray:
        """Current log e-value of every test."""
        return logsumexp_rows(self.loglik, self.grid.log_weights)

    def estimate(self, test: int) -> float | None:
        """The precision-weighted contrast over the intervals seen (S / I), in probability units.

        This is the excess over the null: add the test's ``c0`` back for the raw contrast.
        """
        info = float(self.information[test])
        return float(self.score[test]) / info if info > 0 else None

    def interval(self, test: int, alpha: float) -> tuple[float | None, float | None]:
        """Confidence bounds for the excess (in probability units), each at level 1 - alpha.

        In the normal view (S, I): the lower bound is the smallest d' that the same mixture
        grid, centred at d', does not reject; the upper bound mirrors it. They are for people
        to read; the decision uses the exact factors, so right at the threshold the lower
        bound and the decision can disagree slightly. Solved by bisection around S / I.
        """
        info = float(self.information[test])
        if info <= 0:
            return None, None
        score = float(self.score[test])
        d, log_w = self.grid.offsets, self.grid.log_weights
        log_threshold = math.log(1.0 / alpha)

        def log_e(point: float, sign: float) -> float:
            values = sign * d * (score - point * info) - 0.5 * d**2 * info
            return float(logsumexp_rows(values[None], log_w)[0])

        def solve(sign: float) -> float:
            center = score / info
            span = 1.0
            low, high = center - span, center + span
            for _ in range(60):
                mid = 0.5 * (low + high)
                rejected = log_e(mid, sign) >= log_threshold
                if (sign > 0) == rejected:
                    low = mid
                else:
                    high = mid
            return high if sign > 0 else low

        return solve(+1.0), solve(-1.0)

    def state(self) -> dict[str, list[float] | list[list[float]]]:
        return {
            "loglik": self.loglik.tolist(),
            "score": self.score.tolist(),
            "information": self.information.tolist(),
            "events": self.events.tolist(),
            "totals": self.totals.tolist(),
            "recent_x": self.recent_x.tolist(),
            "recent_n": self.recent_n.tolist(),
        }

    def restore(self, state: dict[str, list[float] | list[list[float]]]) -> None:
        keys = ("loglik", "score", "information", "events", "totals", "recent_x", "recent_n")
        for key in keys:
            value = np.asarray(state[key], dtype=np.float64)
            if value.shape != getattr(self, key).shape:
                raise ValueError("state does not match this set of tests")
            setattr(self, key, value)
