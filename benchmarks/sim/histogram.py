"""Prometheus histogram arithmetic the peer methods need: quantiles from cumulative buckets.

Flagger's and Kayenta's latency checks are ``histogram_quantile(0.99, rate(..._bucket[w]))``:
a quantile interpolated linearly inside the bucket that holds it. We reproduce Prometheus's
rule exactly (including "the +Inf bucket answers with the highest finite bound") so the peers
see the numbers they would see in production.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: npt.ArrayLike) -> FloatArray:
    """The q-quantile of each histogram in ``cumulative`` (last axis: buckets, +Inf last).

    NaN where a histogram is empty, as Prometheus returns no value there.
    """
    cum = np.asarray(cumulative, dtype=np.float64)
    upper = np.asarray(bounds, dtype=np.float64)
    total = cum[..., -1]
    rank = q * total
    # First bucket whose cumulative count reaches the rank.
    idx = np.argmax(cum >= rank[..., None], axis=-1)
    last = cum.shape[-1] - 1
    safe = np.minimum(idx, last - 1)
    end = upper[safe]
    start = np.where(safe > 0, upper[np.maximum(safe - 1, 0)], 0.0)
    below = np.where(
        idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None], -1)[..., 0], 0.0
    )
    in_bucket = np.take_along_axis(cum, idx[..., None], -1)[..., 0] - below
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(in_bucket > 0, (rank - below) / in_bucket, 1.0)
    value = start + (end - start) * frac
    value = np.where(idx >= last, upper[-1], value)
    result: FloatArray = np.where(total > 0, value, np.nan)
    return result


def bucket_probabilities(cdf_at_bounds: npt.ArrayLike) -> FloatArray:
    """Per-bucket probabilities (non-cumulative, +Inf last) from a CDF at the bounds."""
    cdf = np.append(np.asarray(cdf_at_bounds, dtype=np.float64), 1.0)
    probs: FloatArray = np.diff(cdf, prepend=0.0)
    return probs
