"""How much information a test needs before "no harm found" means something.

Why. An e-process that has not crossed its threshold after ten requests says nothing about the
canary. A canary may only be promoted once each test has seen enough data that a regression of
a stated size *would* have been caught with the target power. In the normal approximation the
log-likelihood of an effect b after information v is ``b s - b^2 v / 2`` with score
``s ~ N(b v, v)``, and a mixture e-process over a grid of b crosses its threshold ``log(1/a)``
when ``s`` exceeds a boundary ``s*(v)``. A regression of size ``delta`` is caught at
information ``v`` with probability ``Phi((delta v - s*(v)) / sqrt(v))``; the minimum
information is the smallest ``v`` where that reaches the power. It is conservative (it asks for
detection *at* ``v``, not *by* ``v``). Both tests use it, each in its own units: the count test
with b = log rate ratio and v = sum of m theta0 (1 - theta0); the contrast test with b = excess
of the contrast and v = I.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_V_TABLE: FloatArray = np.logspace(-2, 12, 141)  # information values the boundary is tabled at
_QUANTUM = 0.01  # log-scale step alpha and delta are rounded down to


def mixture_boundary(
    offsets: FloatArray, log_weights: FloatArray, log_threshold: float, information: FloatArray
) -> FloatArray:
    """The score ``s*(v)`` at which log sum_j w_j exp(b_j s - b_j^2 v / 2) = log_threshold.

    Vectorised bisection over ``information`` (the mixture is increasing in s since b_j > 0).
    """
    v = np.asarray(information, dtype=np.float64)[:, None]
    low = np.zeros(v.shape[0])
    high = np.full(v.shape[0], 1.0)

    def log_mix(s: FloatArray) -> FloatArray:
        vals = offsets * s[:, None] - 0.5 * offsets**2 * v + log_weights
        top = vals.max(axis=1)
        result: FloatArray = top + np.log(np.exp(vals - top[:, None]).sum(axis=1))
        return result

    while np.any(log_mix(high) < log_threshold):
        high = np.where(log_mix(high) < log_threshold, high * 2.0, high)
    for _ in range(80):
        mid = 0.5 * (low + high)
        above = log_mix(mid) >= log_threshold
        high = np.where(above, mid, high)
        low = np.where(above, low, mid)
    return high


@lru_cache(maxsize=4096)
def _min_information_cached(
    offsets_bytes: bytes,
    log_weights_bytes: bytes,
    alpha: float,
    delta: float,
    power: float,
) -> float:
    offsets = np.frombuffer(offsets_bytes, dtype=np.float64)
    log_weights = np.frombuffer(log_weights_bytes, dtype=np.float64)
    boundary = mixture_boundary(offsets, log_weights, math.log(1.0 / alpha), _V_TABLE)
    z = NormalDist().inv_cdf(power)
    ok = delta * _V_TABLE - z * np.sqrt(_V_TABLE) >= boundary
    if not ok.any():
        return math.inf
    first = int(np.argmax(ok))
    if first == 0:
        return float(_V_TABLE[0])
    # refine between the two table points on a fine log grid, in one vectorised call
    fine = np.geomspace(float(_V_TABLE[first - 1]), float(_V_TABLE[first]), 65)[1:]
    fine_boundary = mixture_boundary(offsets, log_weights, math.log(1 / alpha), fine)
    fine_ok = delta * fine - z * np.sqrt(fine) >= fine_boundary
    return float(fine[int(np.argmax(fine_ok))]) if fine_ok.any() else float(_V_TABLE[first])


def min_information(
    offsets: FloatArray, log_weights: FloatArray, alpha: float, delta: float, power: float
) -> float:
    """Information a mixture test needs to catch an effect ``delta`` with probability ``power``
    at level ``alpha`` (normal approximation; see the module docstring)."""
    if not 0 < alpha < 1 or not 0 < power < 1 or delta <= 0:
        raise ValueError("need 0 < alpha < 1, 0 < power < 1 and delta > 0")
    # alpha and delta are rounded down to steps of 1% (on a log scale) so that rollouts
    # with nearly the same setup share one computation; rounding down asks for more data
    step = _QUANTUM
    alpha_q = math.exp(math.floor(math.log(alpha) / step) * step)
    delta_q = math.exp(math.floor(math.log(delta) / step) * step)
    return _min_information_cached(
        np.ascontiguousarray(offsets, dtype=np.float64).tobytes(),
        np.ascontiguousarray(log_weights, dtype=np.float64).tobytes(),
        alpha_q,
        delta_q,
        float(power),
    )
