"""The minimum-sample rule: the boundary solves its equation and the power is as promised."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.stats.countratio import DEFAULT_GRID
from canary.stats.samplesize import min_information, mixture_boundary


def test_boundary_solves_the_mixture_equation() -> None:
    v = np.array([1.0, 10.0, 100.0])
    s = mixture_boundary(DEFAULT_GRID.offsets, DEFAULT_GRID.log_weights, math.log(20), v)
    values = DEFAULT_GRID.offsets * s[:, None] - 0.5 * DEFAULT_GRID.offsets**2 * v[:, None]
    log_mix = np.log(np.exp(values + DEFAULT_GRID.log_weights).sum(axis=1))
    assert log_mix == pytest.approx(np.full(3, math.log(20)), abs=1e-8)


def test_more_information_is_needed_for_smaller_effects_more_power_and_less_alpha() -> None:
    grid = DEFAULT_GRID
    base = min_information(grid.offsets, grid.log_weights, 0.05, 0.3, 0.8)
    assert min_information(grid.offsets, grid.log_weights, 0.05, 0.15, 0.8) > base
    assert min_information(grid.offsets, grid.log_weights, 0.05, 0.3, 0.95) > base
    assert min_information(grid.offsets, grid.log_weights, 0.01, 0.3, 0.8) > base
    with pytest.raises(ValueError, match="delta"):
        min_information(grid.offsets, grid.log_weights, 0.05, 0.0, 0.8)


@pytest.mark.parametrize("delta", [0.2, 0.7])
def test_the_promised_power_holds_in_the_normal_model(delta: float) -> None:
    """Simulate the score as Brownian motion with drift delta: by the minimum information the
    mixture e-process must have crossed 1/alpha with at least the target power."""
    grid = DEFAULT_GRID
    need = min_information(grid.offsets, grid.log_weights, 0.05, delta, 0.8)
    rng = np.random.default_rng(1)
    steps = 200
    dv = need / steps
    score = np.cumsum(rng.normal(delta * dv, math.sqrt(dv), (4000, steps)), axis=1)
    v = dv * np.arange(1, steps + 1)
    values = (
        grid.offsets * score[..., None]
        - 0.5 * grid.offsets**2 * v[None, :, None]
        + grid.log_weights
    )
    log_e = np.log(np.exp(values).sum(axis=-1))
    assert float(np.mean((log_e >= math.log(20)).any(axis=1))) >= 0.8
