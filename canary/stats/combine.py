"""Combining many one-sided e-processes into one rollback rule, and naming the culprits.

Why an average. A weighted average of e-processes on the same clock is an e-process, whatever
the dependence between them (expectations add up), so "roll back when sum_k w_k E_k >= 1/alpha"
keeps the false-rollback probability at most alpha by Ville's inequality, with no
independence assumption between metrics or slices. It is at least as powerful as
Bonferroni: a single E_k >= 1/(w_k alpha) is enough on its own, and several moderate
e-values add up.

Why Bonferroni for attribution. Saying *which* metric and slice regressed is a second claim;
E_k >= 1/(w_k alpha) controls the probability of naming any metric that is in fact fine at
alpha (weighted Bonferroni on e-processes, again under any dependence). e-BH (Wang & Ramdas
2022) is given for reports that want a false-discovery view instead.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def normalise(weights: FloatArray) -> FloatArray:
    """Weights scaled to sum to one; every weight must be positive."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be positive and finite")
    result: FloatArray = w / w.sum()
    return result


def log_average(log_evalues: FloatArray, weights: FloatArray) -> FloatArray:
    """log(sum_k w_k E_k) along the last axis, computed from log E_k without overflow."""
    log_w = np.log(weights)
    shifted = log_evalues + log_w
    top = shifted.max(axis=-1)
    result: FloatArray = top + np.log(np.exp(shifted - top[..., None]).sum(axis=-1))
    return result


def rollback(log_evalues: FloatArray, weights: FloatArray, alpha: float) -> NDArray[np.bool_]:
    """Whether the weighted average reaches 1/alpha (shape: the leading axes)."""
    result: NDArray[np.bool_] = log_average(log_evalues, weights) >= np.log(1.0 / alpha)
    return result


def attributed(log_evalues: FloatArray, weights: FloatArray, alpha: float) -> NDArray[np.bool_]:
    """Which tests reach their own weighted Bonferroni threshold 1/(w_k alpha)."""
    result: NDArray[np.bool_] = log_evalues >= np.log(1.0 / (weights * alpha))
    return result


def e_bh(evalues: FloatArray, alpha: float) -> NDArray[np.bool_]:
    """e-BH (Wang & Ramdas): reject the k* largest e-values, k* = max{k: e_(k) >= n/(k alpha)}.

    Controls the false discovery rate at alpha under any dependence.
    """
    e = np.asarray(evalues, dtype=np.float64)
    n = e.size
    order = np.argsort(-e, kind="stable")
    ranks = np.arange(1, n + 1)
    ok = e[order] >= n / (ranks * alpha)
    rejected = np.zeros(n, dtype=bool)
    if ok.any():
        k_star = int(ranks[ok].max())
        rejected[order[:k_star]] = True
    return rejected
