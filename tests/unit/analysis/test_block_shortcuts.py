"""The shortcuts the block statistics take for replay speed change no number.

A histogram's bound tests all see one canary share per interval, so the count test takes one
``log1p`` per interval and grid point for all of them; a contrast block keeps the raw
intervals and cuts the variance window at commit. Both must give exactly (bit for bit) what
the long way gives: the replay's output is compared as text.
"""

from __future__ import annotations

import numpy as np

from canary.stats.countratio import CountRatioTests
from canary.stats.normal import WINDOW, ContrastTests


def test_tests_sharing_one_share_give_what_each_gives_alone() -> None:
    rng = np.random.default_rng(4)
    k, t = 300, 7
    n_canary = rng.poisson(40, (k, 1)).astype(float).repeat(t, axis=1)
    n_baseline = rng.poisson(700, (k, 1)).astype(float).repeat(t, axis=1)
    n_baseline[::17] = 0.0  # intervals with no requests at all (share 0)
    n_canary[::17] = 0.0
    x_canary = rng.binomial(n_canary.astype(int), 0.05 * np.arange(1, t + 1) / t).astype(float)
    x_baseline = rng.binomial(n_baseline.astype(int), 0.03).astype(float)
    together = CountRatioTests(np.full(t, 1.1)).advance(x_canary, n_canary, x_baseline, n_baseline)
    for test in range(t):
        cols = slice(test, test + 1)
        alone = CountRatioTests(np.array([1.1])).advance(
            x_canary[:, cols], n_canary[:, cols], x_baseline[:, cols], n_baseline[:, cols]
        )
        assert np.array_equal(together.log_e[:, cols], alone.log_e)
        assert np.array_equal(together.loglik[:, cols], alone.loglik)
        assert np.array_equal(together.information[:, cols], alone.information)


def test_different_shares_or_nulls_take_the_long_way_with_the_same_numbers() -> None:
    rng = np.random.default_rng(5)
    k = 50
    n_canary = rng.poisson(40, (k, 2)).astype(float)
    n_baseline = rng.poisson(700, (k, 2)).astype(float)
    x_canary = rng.binomial(n_canary.astype(int), 0.04).astype(float)
    x_baseline = rng.binomial(n_baseline.astype(int), 0.03).astype(float)
    for nulls in (np.array([1.0, 1.0]), np.array([1.0, 1.2])):
        both = CountRatioTests(nulls).advance(x_canary, n_canary, x_baseline, n_baseline)
        for test in range(2):
            cols = slice(test, test + 1)
            alone = CountRatioTests(nulls[cols]).advance(
                x_canary[:, cols], n_canary[:, cols], x_baseline[:, cols], n_baseline[:, cols]
            )
            assert np.array_equal(both.log_e[:, cols], alone.log_e)


def test_a_contrast_block_committed_at_any_interval_keeps_that_intervals_window() -> None:
    rng = np.random.default_rng(6)
    k = 2 * WINDOW + 9
    n = rng.uniform(5, 50, (k, 2))
    x = n * rng.uniform(0.05, 0.3, (k, 2))
    terms = np.array([[0, 1]], dtype=np.intp)
    coefs = np.array([[1.0, -1.0]])
    for row in (0, 3, WINDOW - 1, WINDOW, k - 1):
        block_tests = ContrastTests(terms, coefs, np.zeros(1), 2)
        block_tests.commit(block_tests.advance(x, n), row)
        prefix = ContrastTests(terms, coefs, np.zeros(1), 2)
        prefix.update(x[: row + 1], n[: row + 1])
        assert block_tests.state() == prefix.state()
        assert np.array_equal(block_tests.recent_x[-1], x[row])
