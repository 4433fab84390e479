"""The contrast (normal mixture) test: hand-computed values and seeded simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canary.stats.normal import DEFAULT_CONTRAST_GRID, WINDOW, ContrastGrid, ContrastTests

ALPHA = 0.05
THRESHOLD = math.log(1 / ALPHA)


def difference_tests(runs: int, c1: float, c0: float, grid: ContrastGrid | None = None):
    """canary - c1 * baseline - c0 for ``runs`` independent pairs (canary 2i, baseline 2i+1);
    the canary's variance comes from the baseline's rate through the null, as the analysis
    sets it up."""
    terms = np.array([[2 * i, 2 * i + 1] for i in range(runs)], dtype=np.intp)
    coefs = np.tile(np.array([1.0, -c1]), (runs, 1))
    source = np.arange(2 * runs, dtype=np.intp)
    source[0::2] += 1
    slope = np.ones(2 * runs)
    slope[0::2] = c1
    intercept = np.zeros(2 * runs)
    intercept[0::2] = c0
    return ContrastTests(
        terms,
        coefs,
        np.full(runs, c0),
        2 * runs,
        grid=grid if grid is not None else DEFAULT_CONTRAST_GRID,
        source=source,
        slope=slope,
        intercept=intercept,
    )


def interleave(canary: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    out = np.empty((canary.shape[0], 2 * canary.shape[1]))
    out[:, 0::2], out[:, 1::2] = canary, baseline
    return out


def binomial_psi(n: float, q: float, step: float) -> float:
    """n log E[exp(step (B - q))] for one Bernoulli B with rate q: the centred log-mgf."""
    return n * (math.log(1 - q + q * math.exp(step)) - step * q)


def test_two_intervals_by_hand() -> None:
    d = 0.1
    grid = ContrastGrid(offsets=np.array([d]), log_weights=np.array([0.0]))
    tests = difference_tests(1, c1=1.0, c0=0.0, grid=grid)
    x = np.array([[5.0, 10.0], [8.0, 20.0]])  # canary, baseline events per interval
    n = np.array([[20.0, 100.0], [40.0, 100.0]])
    log_e, info = tests.update(x, n)
    expected = 0.0
    s = i = 0.0
    # interval 1: nothing before -> rate 1/2 for both arms; interval 2: the baseline's rate
    # before it, (10 + .5) / (100 + 1), for both arms (the canary's through the null)
    for (xc, xb), (nc, nb), q in zip(x, n, [0.5, 10.5 / 101], strict=True):
        v = q * (1 - q) / nc + q * (1 - q) / nb
        c = xc / nc - xb / nb
        lam = d / v
        expected += lam * c - binomial_psi(nc, q, lam / nc) - binomial_psi(nb, q, -lam / nb)
        s += c / v
        i += 1 / v
    assert log_e[-1, 0] == pytest.approx(expected, rel=1e-10)
    assert info[-1, 0] == pytest.approx(i, rel=1e-12)
    assert tests.estimate(0) == pytest.approx(s / i, rel=1e-12)


def test_an_interval_missing_one_side_is_skipped() -> None:
    tests = difference_tests(1, 1.0, 0.0)
    log_e, info = tests.update(np.array([[3.0, 0.0]]), np.array([[10.0, 0.0]]))
    assert log_e[0, 0] == pytest.approx(0.0, abs=1e-12)
    assert info[0, 0] == 0.0


def test_variance_comes_from_a_recent_window_and_blocking_does_not_matter() -> None:
    rng = np.random.default_rng(8)
    k = 3 * WINDOW + 7
    n = rng.uniform(5, 50, (k, 2))  # Prometheus increase() counts need not be integers
    x = n * rng.uniform(0.05, 0.3, (k, 2))
    whole = difference_tests(1, 1.0, 0.01)
    log_whole, _ = whole.update(x, n)
    pieces = difference_tests(1, 1.0, 0.01)
    parts = [pieces.update(x[i : i + 5], n[i : i + 5])[0] for i in range(0, k, 5)]
    assert np.array_equal(np.concatenate(parts), log_whole)
    # the window holds the last WINDOW intervals only
    assert np.array_equal(whole.recent_n, n[-WINDOW:])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(1, 60), st.integers(1, 60)),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([0.0, 0.02]),
)
def test_more_canary_harm_never_lowers_the_e_value(
    ticks: list[tuple[int, int, int, int]], c0: float
) -> None:
    data = np.array(ticks, dtype=float)
    n_c, n_b = data[:, 2:3], data[:, 3:4]
    x_c = np.minimum(data[:, 0:1], n_c)
    x_b = np.minimum(data[:, 1:2], n_b)
    base = difference_tests(1, 1.0, c0)
    log_base, _ = base.update(interleave(x_c, x_b), interleave(n_c, n_b))
    assert np.all(np.isfinite(log_base))
    if x_c[-1, 0] < n_c[-1, 0]:
        x_c[-1, 0] += 1
        worse = difference_tests(1, 1.0, c0)
        log_worse, _ = worse.update(interleave(x_c, x_b), interleave(n_c, n_b))
        assert log_worse[-1, 0] >= log_base[-1, 0]


def ramp(rng: np.random.Generator, runs: int, k: int, per_interval: float):
    share = np.array([[0.01, 0.05, 0.25, 0.5][min(i // (k // 4), 3)] for i in range(k)])
    n = rng.poisson(per_interval, (k, runs))
    n_c = rng.binomial(n, share[:, None])
    return n_c, n - n_c


@pytest.mark.parametrize(
    ("q_base", "q_canary", "margin"),
    [(0.10, 0.12, 0.02), (0.30, 0.32, 0.02), (0.02, 0.03, 0.01)],
)
def test_type_one_error_at_the_null_boundary_on_a_ramp(
    q_base: float, q_canary: float, margin: float
) -> None:
    """A canary exactly as bad as tolerated (adverse rate = baseline + margin), a few labels
    per interval at a 1% share: rolled back at most alpha of the time."""
    rng = np.random.default_rng(int(q_base * 1000))
    runs, k = 500, 480
    n_c, n_b = ramp(rng, runs, k, 250)
    x_c = rng.binomial(n_c, q_canary).astype(float)
    x_b = rng.binomial(n_b, q_base).astype(float)
    tests = difference_tests(runs, 1.0, margin)
    log_e, _ = tests.update(interleave(x_c, x_b), interleave(n_c, n_b).astype(float))
    assert float(np.mean((log_e >= THRESHOLD).any(axis=0))) <= ALPHA


def test_strata_per_interval_prevent_a_simpson_false_alarm() -> None:
    """Accuracy drifts down over the day in both arms while the canary's share grows: the
    cumulative proportions make the canary look worse, the per-interval contrast does not."""
    rng = np.random.default_rng(99)
    runs, k = 300, 240
    share = np.linspace(0.02, 0.5, k)
    q = np.linspace(0.05, 0.25, k)[:, None]  # adverse rate rises with time, same in both arms
    n = rng.poisson(400, (k, runs))
    n_c = rng.binomial(n, share[:, None])
    n_b = n - n_c
    x_c = rng.binomial(n_c, q).astype(float)
    x_b = rng.binomial(n_b, q).astype(float)
    tests = difference_tests(runs, 1.0, 0.0)
    log_e, _ = tests.update(interleave(x_c, x_b), interleave(n_c, n_b).astype(float))
    assert float(np.mean((log_e >= THRESHOLD).any(axis=0))) <= ALPHA
    # the cumulative comparison on the same data is fooled
    cum_c = x_c.sum(0) / n_c.sum(0)
    cum_b = x_b.sum(0) / n_b.sum(0)
    assert float(np.mean(cum_c - cum_b > 0.02)) > 0.9


def test_detects_an_accuracy_drop_beyond_the_tolerance() -> None:
    rng = np.random.default_rng(2)
    runs, k = 300, 240  # one hour
    n = rng.poisson(125, (k, runs))  # labels of one group per 15 s, both arms
    n_c = rng.binomial(n, 0.05)
    n_b = n - n_c
    x_c = rng.binomial(n_c, 0.20).astype(float)  # 0.9 -> 0.8 accuracy
    x_b = rng.binomial(n_b, 0.10).astype(float)
    tests = difference_tests(runs, 1.0, 0.02)
    log_e, _ = tests.update(interleave(x_c, x_b), interleave(n_c, n_b).astype(float))
    assert float(np.mean((log_e >= THRESHOLD + math.log(6)).any(axis=0))) >= 0.95


def test_bounds_agree_with_clear_decisions_and_cover_the_truth() -> None:
    rng = np.random.default_rng(4)
    runs, k = 40, 120
    n_c = rng.poisson(40, (k, runs)).astype(float)
    n_b = rng.poisson(400, (k, runs)).astype(float)
    x_c = rng.binomial(n_c.astype(int), 0.16).astype(float)
    x_b = rng.binomial(n_b.astype(int), 0.10).astype(float)
    tests = difference_tests(runs, 1.0, 0.02)
    log_e, _ = tests.update(interleave(x_c, x_b), interleave(n_c, n_b))
    covered = 0
    for run in range(runs):
        low, high = tests.interval(run, ALPHA)
        assert low is not None
        assert high is not None
        assert low < high
        # bounds come from the normal view (S, I), the decision from exact factors: they
        # agree away from the threshold
        if log_e[-1, run] >= THRESHOLD + 1:
            assert low > 0
        if log_e[-1, run] <= THRESHOLD - 1:
            assert low < 0
        covered += low <= 0.04 <= high  # true excess: 0.16 - 0.10 - 0.02
    assert covered / runs >= 0.9
