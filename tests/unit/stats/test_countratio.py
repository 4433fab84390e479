"""The count test: hand-computed values, invariances, and seeded simulations of its claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canary.stats.countratio import DEFAULT_GRID, CountRatioTests, MixingGrid

ALPHA = 0.05
THRESHOLD = math.log(1 / ALPHA)


def one_point(ratio: float) -> MixingGrid:
    return MixingGrid(offsets=np.array([math.log(ratio)]), log_weights=np.array([0.0]))


def col(*values: float) -> np.ndarray:
    """A block of intervals for a single test: shape (K, 1)."""
    return np.array(values, dtype=float)[:, None]


def test_single_interval_matches_the_binomial_likelihood_ratio_by_hand() -> None:
    # equal traffic (rho = 1/2); 3 of 4 errors on the canary; alternative r = 2 -> theta = 2/3
    # LR = (2/3)^3 (1/3) / (1/2)^4 = 128/81
    tests = CountRatioTests(np.array([1.0]), grid=one_point(2.0))
    log_e, info = tests.update(col(3), col(100), col(1), col(100))
    assert math.exp(log_e[0, 0]) == pytest.approx(128 / 81, rel=1e-12)
    # Fisher information about log r at the null: m theta0 (1 - theta0) = 4 * 1/4
    assert info[0, 0] == pytest.approx(1.0)


def test_null_ratio_shifts_the_null_share() -> None:
    # r0 = 1.5, rho = 1/2: theta0 = 1.5 / 2.5 = 0.6; alternative r = 3: theta = 0.75
    # 2 canary errors, 0 baseline: LR = 0.75^2 / 0.6^2 = 1.5625
    tests = CountRatioTests(np.array([1.5]), grid=one_point(2.0))
    log_e, _ = tests.update(col(2), col(10), col(0), col(10))
    assert math.exp(log_e[0, 0]) == pytest.approx(0.75**2 / 0.6**2, rel=1e-12)


def test_unequal_realised_share_uses_that_intervals_share() -> None:
    # rho = 30/(30+90) = 1/4, r = 3: theta = 0.75 / (0.75 + 0.75) = 1/2
    # x_C = 1, x_B = 1: LR = (1/2)(1/2) / ((1/4)(3/4)) = 4/3
    tests = CountRatioTests(np.array([1.0]), grid=one_point(3.0))
    log_e, _ = tests.update(col(1), col(30), col(1), col(90))
    assert math.exp(log_e[0, 0]) == pytest.approx(4 / 3, rel=1e-12)


def test_intervals_without_events_or_traffic_change_nothing() -> None:
    tests = CountRatioTests(np.array([1.0, 1.2]))
    zeros = np.zeros((3, 2))
    log_e, info = tests.update(zeros, np.array([[0, 0], [50, 5], [0, 0.0]]), zeros, zeros + 7)
    assert np.all(log_e == 0.0)
    assert np.all(info == 0.0)


def test_blocks_and_single_intervals_give_identical_numbers() -> None:
    rng = np.random.default_rng(3)
    k, t = 40, 5
    n_c = rng.poisson(80, (k, t)).astype(float)
    n_b = rng.poisson(900, (k, t)).astype(float)
    x_c = rng.binomial(n_c.astype(int), 0.02).astype(float)
    x_b = rng.binomial(n_b.astype(int), 0.01).astype(float)
    whole = CountRatioTests(np.full(t, 1.1))
    log_whole, _ = whole.update(x_c, n_c, x_b, n_b)
    single = CountRatioTests(np.full(t, 1.1))
    rows = [
        single.update(x_c[i : i + 1], n_c[i : i + 1], x_b[i : i + 1], n_b[i : i + 1])[0]
        for i in range(k)
    ]
    assert np.array_equal(np.concatenate(rows), log_whole)
    assert np.array_equal(single.loglik, whole.loglik)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=2, max_size=12),
    st.integers(1, 200),
)
def test_with_a_constant_share_merging_intervals_changes_nothing(
    events: list[tuple[int, int]], scale: int
) -> None:
    """With the same share in every interval the evidence depends only on the totals."""
    x_c = np.array([e[0] for e in events], dtype=float)[:, None]
    x_b = np.array([e[1] for e in events], dtype=float)[:, None]
    n_c = np.full_like(x_c, 30.0 * scale)
    n_b = np.full_like(x_b, 90.0 * scale)
    split = CountRatioTests(np.array([1.0]))
    log_split, _ = split.update(x_c, n_c, x_b, n_b)
    merged = CountRatioTests(np.array([1.0]))
    log_merged, _ = merged.update(
        x_c.sum(0, keepdims=True),
        n_c.sum(0, keepdims=True),
        x_b.sum(0, keepdims=True),
        n_b.sum(0, keepdims=True),
    )
    assert log_split[-1, 0] == pytest.approx(log_merged[0, 0], abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, 300), st.integers(1, 300)),
        min_size=1,
        max_size=10,
    ),
    st.floats(1.0, 3.0),
)
def test_e_values_are_positive_and_more_harm_never_lowers_them(
    ticks: list[tuple[int, int, int, int]], r0: float
) -> None:
    data = np.array(ticks, dtype=float)
    x_c, x_b, n_c, n_b = (data[:, i : i + 1] for i in range(4))
    x_c = np.minimum(x_c, n_c)
    x_b = np.minimum(x_b, n_b)
    base = CountRatioTests(np.array([r0]))
    log_e, _ = base.update(x_c, n_c, x_b, n_b)
    assert np.all(np.isfinite(log_e))  # E = exp(log E) > 0
    # one more canary event in the last interval (one fewer baseline event if there is one)
    worse_c = x_c.copy()
    worse_b = x_b.copy()
    worse_c[-1] += 1
    n_c2 = np.maximum(n_c, worse_c)
    if worse_b[-1, 0] > 0:
        worse_b[-1] -= 1
    worse = CountRatioTests(np.array([r0]))
    log_worse, _ = worse.update(worse_c, n_c2, worse_b, n_b)
    # more canary traffic with the same events would dilute; compare at equal totals
    same_totals = CountRatioTests(np.array([r0]))
    log_same, _ = same_totals.update(x_c, n_c2, x_b, n_b)
    assert log_worse[-1, 0] >= log_same[-1, 0] - 1e-9


def ramp_share(k: int) -> float:
    return [0.01, 0.05, 0.25, 0.5][min(k // 120, 3)]


def simulate_ramp(rng: np.random.Generator, runs: int, p_base: float, ratio: float):
    """Counts of a 2-hour rollout per run: a 1/5/25/50% ramp, a daily-like load swing and error
    bursts that hit both arms (10 intervals in 100 at 3x the rate)."""
    k = 480
    share = np.array([ramp_share(i) for i in range(k)])
    load = 1500 * (1 + 0.8 * np.sin(np.arange(k) / 40.0))
    burst = 1 + 2 * (np.arange(k) % 100 < 10)
    n = rng.poisson(load, (runs, k))
    n_c = rng.binomial(n, share)
    n_b = n - n_c
    x_c = rng.binomial(n_c, np.minimum(p_base * burst * ratio, 1))
    x_b = rng.binomial(n_b, p_base * burst)
    return [a.T.astype(float) for a in (x_c, n_c, x_b, n_b)], share


def test_false_rollbacks_stay_below_alpha_on_a_ramp_where_the_naive_formula_fails() -> None:
    """The claim the whole project rests on, on the ramp STATS.md warns about: the count
    test rolls back a no-worse canary at most alpha of the time; the cumulative conjugate
    formula with the current share, on the same data, almost always does."""
    rng = np.random.default_rng(20240607)
    (x_c, n_c, x_b, n_b), share = simulate_ramp(rng, runs=400, p_base=0.01, ratio=1.0)
    tests = CountRatioTests(np.ones(x_c.shape[1]))
    log_e, _ = tests.update(x_c, n_c.astype(float), x_b, n_b.astype(float))
    false_rollbacks = float(np.mean((log_e >= THRESHOLD).any(axis=0)))
    assert false_rollbacks <= ALPHA

    from scipy.special import betaln

    cum_c, cum_b = np.cumsum(x_c, 0), np.cumsum(x_b, 0)
    theta = share[:, None]
    a, b = 50 * theta, 50 * (1 - theta)
    naive = (
        betaln(a + cum_c, b + cum_b)
        - betaln(a, b)
        - cum_c * np.log(theta)
        - cum_b * np.log(1 - theta)
    )
    assert float(np.mean((naive >= THRESHOLD).any(axis=0))) > 0.5


def test_frequent_bernoulli_events_at_the_null_boundary_keep_type_one_error() -> None:
    """Valid for frequent events too (a 30% 'slow' rate exactly at r0 = 1.1)."""
    rng = np.random.default_rng(11)
    runs, k = 400, 200
    n_c = rng.poisson(60, (k, runs)).astype(float)
    n_b = rng.poisson(600, (k, runs)).astype(float)
    x_b = rng.binomial(n_b.astype(int), 0.30).astype(float)
    x_c = rng.binomial(n_c.astype(int), 0.33).astype(float)
    tests = CountRatioTests(np.full(runs, 1.1))
    log_e, _ = tests.update(x_c, n_c, x_b, n_b)
    assert float(np.mean((log_e >= THRESHOLD).any(axis=0))) <= ALPHA


def test_detects_a_doubled_error_rate_near_the_oracle() -> None:
    """1% -> 2% errors at a 5% share of 100 req/s, 15 s intervals: detected in >= 95% of
    one-hour canaries, with a median exposure within 1.3x of an oracle SPRT that knows the
    true ratio and sees the same intervals."""
    rng = np.random.default_rng(7)
    runs, k = 1000, 240
    n = rng.poisson(1500, (k, runs))
    n_canary = rng.binomial(n, 0.05)
    x_c = rng.binomial(n_canary, 0.02).astype(float)
    x_b = rng.binomial(n - n_canary, 0.01).astype(float)
    n_c = n_canary.astype(float)
    n_b = (n - n_canary).astype(float)
    tests = CountRatioTests(np.ones(runs), grid=DEFAULT_GRID)
    log_e, _ = tests.update(x_c, n_c, x_b, n_b)

    def exposure(log_evalues: np.ndarray) -> np.ndarray:
        hit = log_evalues >= THRESHOLD
        first = hit.argmax(axis=0)
        requests = np.cumsum(n_c, axis=0)[first, np.arange(runs)]
        return np.where(hit.any(axis=0), requests, np.inf)

    ours = exposure(log_e)
    assert np.mean(np.isfinite(ours)) >= 0.95
    rho = n_c / (n_c + n_b)
    theta1 = 2 * rho / (2 * rho + 1 - rho)
    oracle = np.cumsum(x_c * np.log(theta1 / rho) + x_b * np.log((1 - theta1) / (1 - rho)), 0)
    ratio = np.median(ours) / np.median(exposure(oracle))
    assert ratio <= 1.3


def test_ratio_bounds_agree_with_the_decision_and_cover_the_truth() -> None:
    rng = np.random.default_rng(5)
    covered = 0
    runs = 60
    for _ in range(runs):
        n_c = rng.poisson(200, (60, 1)).astype(float)
        n_b = rng.poisson(1800, (60, 1)).astype(float)
        x_c = rng.binomial(n_c.astype(int), 0.03).astype(float)
        x_b = rng.binomial(n_b.astype(int), 0.01).astype(float)
        tests = CountRatioTests(np.array([1.0]))
        log_e, _ = tests.update(x_c, n_c, x_b, n_b)
        low, high = tests.ratio_interval(0, ALPHA)
        assert low is not None
        assert high is not None
        assert (low > 1.0) == (log_e[-1, 0] >= THRESHOLD)
        covered += low <= 3.0 <= high
    assert covered / runs >= 0.9
