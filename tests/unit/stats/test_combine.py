"""Combining e-processes: the average rule, Bonferroni attribution and e-BH."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.stats.combine import attributed, e_bh, log_average, normalise, rollback


def test_weights_are_normalised_and_must_be_positive() -> None:
    assert normalise(np.array([1.0, 1.0, 2.0])).tolist() == [0.25, 0.25, 0.5]
    with pytest.raises(ValueError, match="positive"):
        normalise(np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="positive"):
        normalise(np.array([]))


def test_log_average_is_the_weighted_average_without_overflow() -> None:
    e = np.array([4.0, 40.0, 0.5])
    w = np.array([0.5, 0.25, 0.25])
    assert math.exp(log_average(np.log(e), w)) == pytest.approx(2 + 10 + 0.125)
    huge = log_average(np.array([1000.0, 0.0]), np.array([0.5, 0.5]))
    assert huge == pytest.approx(1000 + math.log(0.5))


def test_the_average_rolls_back_on_several_moderate_e_values() -> None:
    # neither 12 nor 12 passes its Bonferroni threshold 1/(0.5 * 0.05) = 40, the average
    # passes 1/alpha = 20 only if both are large: 0.5*12 + 0.5*30 = 21
    w = np.array([0.5, 0.5])
    assert not rollback(np.log(np.array([12.0, 12.0])), w, 0.05)
    assert rollback(np.log(np.array([12.0, 30.0])), w, 0.05)
    assert not attributed(np.log(np.array([12.0, 30.0])), w, 0.05).any()
    assert attributed(np.log(np.array([41.0, 1.0])), w, 0.05).tolist() == [True, False]


def test_e_bh_by_hand() -> None:
    # n = 4, alpha = 0.1: thresholds n/(k alpha) = 40, 20, 13.3, 10 for k = 1..4
    e = np.array([50.0, 15.0, 21.0, 0.5])
    # sorted: 50 (>=40), 21 (>=20), 15 (>=13.3), 0.5 (<10) -> k* = 3
    assert e_bh(e, 0.1).tolist() == [True, True, True, False]
    assert not e_bh(np.array([30.0, 1.0]), 0.05).any()  # 30 < 2/(1*0.05) = 40


def test_average_of_null_e_processes_keeps_alpha_under_strong_dependence() -> None:
    """Ten perfectly correlated copies plus ten independent ones, all under the null."""
    from canary.stats.countratio import CountRatioTests

    rng = np.random.default_rng(17)
    runs, k = 400, 200
    n_c = rng.poisson(100, (k, runs)).astype(float)
    n_b = rng.poisson(900, (k, runs)).astype(float)
    x_c = rng.binomial(n_c.astype(int), 0.01).astype(float)
    x_b = rng.binomial(n_b.astype(int), 0.01).astype(float)
    shared = CountRatioTests(np.ones(runs)).update(x_c, n_c, x_b, n_b)[0]
    x_c2 = rng.binomial(n_c.astype(int), 0.01).astype(float)
    x_b2 = rng.binomial(n_b.astype(int), 0.01).astype(float)
    other = CountRatioTests(np.ones(runs)).update(x_c2, n_c, x_b2, n_b)[0]
    stacked = np.stack([shared] * 10 + [other] * 10, axis=-1)  # (k, runs, 20)
    weights = np.full(20, 1 / 20)
    crossed = rollback(stacked, weights, 0.05).any(axis=0)
    assert float(crossed.mean()) <= 0.05
