"""Selection-rate parity across groups: the measures and the contrasts that test them.

Why pairs. "The canary's lowest selection rate is below ``min_ratio`` times its highest"
(the four-fifths rule, 29 CFR 1607.4(D)) is true exactly when some ordered pair of groups
(g, h) has s_g < min_ratio * s_h. So the null "the canary passes the rule" is the
intersection of the pair nulls s_g >= min_ratio * s_h, and an average of one e-process per
ordered pair is an e-process for it.

"The canary's parity gap (max - min) exceeds the baseline's by more than ``max_gap_increase``"
holds exactly when some canary pair (g, h) has s_Cg - s_Ch > gap_B + delta, that is, when
s_Cg - s_Ch - (s_Bg' - s_Bh') > delta for *every* baseline pair (g', h'). The null of one
canary pair is then a union over baseline pairs, and the minimum of e-processes, each valid
for one member of the union, is valid for the union; the average over canary pairs of these
minima is the e-process of the whole check. Testing only the matching baseline pair would be
wrong: the baseline's gap can come from a different pair of groups.

Proportions are numbered canary groups first (0..G-1), then baseline groups (G..2G-1).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


def selection_rates(positives: FloatArray, totals: FloatArray) -> FloatArray:
    """Positives / total per group; NaN for a group with no observation."""
    pos = np.asarray(positives, dtype=np.float64)
    tot = np.asarray(totals, dtype=np.float64)
    rates: FloatArray = np.divide(pos, tot, out=np.full_like(tot, np.nan), where=tot > 0)
    return rates


def parity_ratio(rates: FloatArray) -> float | None:
    """Lowest / highest selection rate over groups with data (Fairlearn's demographic parity
    ratio); None without two groups with data, 1.0 when every rate is zero."""
    seen = rates[np.isfinite(rates)]
    if seen.size < 2:
        return None
    top = float(seen.max())
    return 1.0 if top == 0 else float(seen.min()) / top


def parity_gap(rates: FloatArray) -> float | None:
    """Highest - lowest selection rate over groups with data (demographic parity difference)."""
    seen = rates[np.isfinite(rates)]
    if seen.size < 2:
        return None
    return float(seen.max() - seen.min())


@dataclass(frozen=True)
class PairContrasts:
    """Contrasts in the layout ``canary.stats.normal.ContrastTests`` takes.

    ``pair`` (T,) is the index of the canary pair (into ``pairs``) each contrast belongs to;
    the e-value of a canary pair is the minimum over its contrasts.
    """

    terms: IntArray
    coefs: FloatArray
    offsets: FloatArray
    pair: IntArray
    pairs: list[tuple[int, int]]


def ordered_pairs(n_groups: int) -> list[tuple[int, int]]:
    """(g, h) for g != h: g is the group that would be disadvantaged."""
    return [(g, h) for g, h in itertools.permutations(range(n_groups), 2)]


def ratio_contrasts(n_groups: int, min_ratio: float) -> PairContrasts:
    """One contrast per ordered canary pair: min_ratio * s_h - s_g (harm when above zero)."""
    pairs = ordered_pairs(n_groups)
    terms = np.array([[h, g] for g, h in pairs], dtype=np.intp).reshape(-1, 2)
    coefs = np.tile(np.array([min_ratio, -1.0]), (len(pairs), 1))
    return PairContrasts(
        terms=terms,
        coefs=coefs,
        offsets=np.zeros(len(pairs)),
        pair=np.arange(len(pairs), dtype=np.intp),
        pairs=pairs,
    )


def gap_contrasts(n_groups: int, max_gap_increase: float) -> PairContrasts:
    """For each canary pair (g, h) and baseline pair (g', h'):
    s_Cg - s_Ch - s_Bg' + s_Bh' - delta (harm when above zero)."""
    pairs = ordered_pairs(n_groups)
    g_n = n_groups
    rows: list[list[int]] = []
    owner: list[int] = []
    for index, (g, h) in enumerate(pairs):
        for gb, hb in pairs:
            rows.append([g, h, g_n + gb, g_n + hb])
            owner.append(index)
    count = len(rows)
    return PairContrasts(
        terms=np.array(rows, dtype=np.intp).reshape(-1, 4),
        coefs=np.tile(np.array([1.0, -1.0, -1.0, 1.0]), (count, 1)),
        offsets=np.full(count, float(max_gap_increase)),
        pair=np.array(owner, dtype=np.intp),
        pairs=pairs,
    )


def min_per_pair(log_evalues: FloatArray, pair: IntArray, n_pairs: int) -> FloatArray:
    """The minimum log e-value over the contrasts of each canary pair; shape (..., n_pairs)."""
    shape = (*log_evalues.shape[:-1], n_pairs)
    out = np.full(shape, np.inf)
    for index in range(n_pairs):
        out[..., index] = log_evalues[..., pair == index].min(axis=-1)
    return out
