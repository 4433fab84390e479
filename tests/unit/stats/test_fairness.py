"""Selection-rate parity: measures by hand and the pair contrasts' layout and meaning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.stats import fairness as fair
from canary.stats.normal import ContrastTests

ALPHA = 0.05


def test_measures_by_hand() -> None:
    rates = fair.selection_rates(np.array([30.0, 24.0, 0.0]), np.array([100.0, 100.0, 0.0]))
    assert rates[:2].tolist() == [0.3, 0.24]
    assert math.isnan(rates[2])
    assert fair.parity_ratio(rates) == pytest.approx(0.8)
    assert fair.parity_gap(rates) == pytest.approx(0.06)
    assert fair.parity_ratio(np.array([0.3, np.nan])) is None
    assert fair.parity_ratio(np.array([0.0, 0.0])) == 1.0


def test_ratio_contrasts_cover_every_ordered_pair() -> None:
    spec = fair.ratio_contrasts(3, 0.8)
    assert spec.pairs == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    # contrast of pair (g, h) = 0.8 s_h - s_g: terms [h, g]
    assert spec.terms[0].tolist() == [1, 0]
    assert spec.coefs[0].tolist() == [0.8, -1.0]
    rates = np.array([0.2, 0.3, 0.3])
    values = (spec.coefs * rates[spec.terms]).sum(axis=1)
    harmful = [spec.pairs[i] for i in np.nonzero(values > 0)[0]]
    assert harmful == [(0, 1), (0, 2)]  # 0.2 < 0.8 * 0.3


def test_gap_null_uses_every_baseline_pair() -> None:
    """The baseline's gap comes from groups (0, 2); the canary widens the gap of (0, 1) only
    as far as the baseline's overall gap: not a breach of "gap_C <= gap_B + delta"."""
    spec = fair.gap_contrasts(3, 0.02)
    canary = np.array([0.20, 0.30, 0.30])
    baseline = np.array([0.20, 0.22, 0.30])
    props = np.concatenate([canary, baseline])
    values = (spec.coefs * props[spec.terms]).sum(axis=1) - spec.offsets
    per_pair = fair.min_per_pair(values[None], spec.pair, len(spec.pairs))[0]
    # gap_C = 0.10, gap_B = 0.10: no canary pair exceeds every baseline pair by 0.02
    assert np.all(per_pair <= 0)
    # matching only the same pair would wrongly flag (1, 0): 0.10 - 0.02 - 0.02 > 0
    same_pair = canary[1] - canary[0] - (baseline[1] - baseline[0]) - 0.02
    assert same_pair > 0


def test_four_fifths_breach_is_detected_and_a_fair_canary_is_not() -> None:
    rng = np.random.default_rng(31)
    runs, k = 200, 240
    spec = fair.ratio_contrasts(3, 0.8)

    def run(rates: list[float]) -> float:
        crossed = 0
        for _ in range(runs // 50):
            n = rng.poisson(25, (k, 50, 3)).astype(float)  # canary predictions per group
            x = rng.binomial(n.astype(int), np.array(rates)).astype(float)
            blocks = []
            for r in range(50):
                tests = ContrastTests(spec.terms, spec.coefs, spec.offsets, 3)
                blocks.append(tests.update(x[:, r, :], n[:, r, :])[0])
            for log_e in blocks:
                pairs = log_e  # one contrast per pair for the ratio part
                avg = np.log(np.exp(pairs).mean(axis=1))
                crossed += bool((avg >= math.log(1 / ALPHA)).any())
        return crossed / runs

    assert run([0.3, 0.3, 0.3]) <= ALPHA
    assert run([0.3, 0.3, 0.24]) <= ALPHA  # exactly four fifths: the null boundary
    assert run([0.3, 0.3, 0.18]) >= 0.95  # ratio 0.6
