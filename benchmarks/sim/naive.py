"""A fixed-horizon z-test repeated at every tick: what "just test it" does when it peeks.

Each check gets the one-sided two-proportion z-test a textbook gives, on the cumulative
counts, at its weighted-Bonferroni share of alpha (the policy's weights, split equally over
slices), so the only thing wrong with it is that it looks at every tick. The test of each
kind:

- ratio: canary rate against the baseline's moved by the tolerance (``p_B (1 + r)`` or
  ``p_B + a`` when higher is worse; ``p_B (1 - r)`` or ``p_B - a`` when lower is worse),
  unpooled (Wald) variance;
- histogram: the same on the share of requests slower than the bucket bound that holds the
  baseline's p99 at that tick;
- fairness: ``min_ratio x p_max - p_min > 0`` on the canary's highest and lowest selection
  rates across slices (and the parity gap against the baseline's when the policy sets
  ``max_gap_increase``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

from benchmarks.sim.outcome import NO_ROLLBACK, Breach, Outcome, rollback_at
from benchmarks.sim.policyview import PolicyView, Rule
from benchmarks.sim.rollout import BASELINE, CANARY, HistogramCounts, RatioCounts, Rollout

FloatArray = npt.NDArray[np.float64]


def _rate_var(events: FloatArray, total: FloatArray) -> tuple[FloatArray, FloatArray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, events / np.maximum(total, 1.0), 0.0)
        v = np.where(total > 0, p * (1.0 - p) / np.maximum(total, 1.0), 0.0)
    return p, v


def _z(diff: FloatArray, var: FloatArray, valid: npt.NDArray[np.bool_]) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        z: FloatArray = np.where(
            valid & (var > 0), diff / np.sqrt(np.where(var > 0, var, 1.0)), 0.0
        )
        return z


def ratio_z(rule: Rule, events: FloatArray, total: FloatArray) -> FloatArray:
    """z of "canary worse than the baseline beyond tolerance", per tick: arrays (2, ticks)."""
    p_b, v_b = _rate_var(events[BASELINE], total[BASELINE])
    p_c, v_c = _rate_var(events[CANARY], total[CANARY])
    sign = 1.0 if rule.worse_when == "higher" else -1.0
    if rule.relative is not None:
        scale = 1.0 + sign * rule.relative
        bound = p_b * scale
    else:
        scale = 1.0
        bound = p_b + sign * (rule.absolute or 0.0)
    diff = sign * (p_c - bound)
    valid = (total[BASELINE] > 0) & (total[CANARY] > 0)
    return _z(diff, v_c + scale**2 * v_b, valid)


def _exceedances(series: HistogramCounts) -> tuple[FloatArray, FloatArray]:
    """Requests slower than the bound holding the baseline's p99, per arm and tick."""
    counts = series.counts.astype(np.float64)
    total = counts[..., -1]
    base = counts[BASELINE]
    reached = base >= 0.99 * base[:, -1:]
    idx = np.minimum(np.argmax(reached, axis=1), counts.shape[2] - 2)  # a finite bound
    below = np.take_along_axis(counts, np.broadcast_to(idx[None, :, None], (2, idx.shape[0], 1)), 2)
    return total - below[..., 0], total


def fairness_z(rule: Rule, series: RatioCounts) -> list[tuple[FloatArray, FloatArray]]:
    """(z per tick, index of the canary's lowest slice per tick) for each fairness rule set."""
    ev = series.events.astype(np.float64)
    tot = series.total.astype(np.float64)
    p, v = _rate_var(ev, tot)  # (2, ticks, slices)
    ticks = np.arange(p.shape[1])
    hi_c, lo_c = np.argmax(p[CANARY], axis=1), np.argmin(p[CANARY], axis=1)
    valid = np.all(tot[CANARY] > 0, axis=1)
    out: list[tuple[FloatArray, FloatArray]] = []
    if rule.min_ratio is not None:
        m = rule.min_ratio
        diff = m * p[CANARY, ticks, hi_c] - p[CANARY, ticks, lo_c]
        var = m**2 * v[CANARY, ticks, hi_c] + v[CANARY, ticks, lo_c]
        out.append((_z(diff, var, valid), lo_c.astype(np.float64)))
    if rule.max_gap_increase is not None:
        hi_b, lo_b = np.argmax(p[BASELINE], axis=1), np.argmin(p[BASELINE], axis=1)
        gap_c = p[CANARY, ticks, hi_c] - p[CANARY, ticks, lo_c]
        gap_b = p[BASELINE, ticks, hi_b] - p[BASELINE, ticks, lo_b]
        var = (
            v[CANARY, ticks, hi_c] + v[CANARY, ticks, lo_c]
            + v[BASELINE, ticks, hi_b] + v[BASELINE, ticks, lo_b]
        )  # fmt: skip
        both = valid & np.all(tot[BASELINE] > 0, axis=1)
        out.append((_z(gap_c - gap_b - rule.max_gap_increase, var, both), lo_c.astype(np.float64)))
    return out


def naive_ztest(rollout: Rollout, view: PolicyView) -> Outcome:
    """Roll back at the first tick where any check's z exceeds its Bonferroni critical value."""
    # Each test: z per tick, its critical value, and what it blames at each tick.
    tests: list[tuple[FloatArray, float, list[Breach]]] = []
    ticks = rollout.ticks
    for rule in view.rules:
        series = rollout.metrics.get(rule.name)
        if series is None:
            continue
        if isinstance(series, HistogramCounts):
            events, total = _exceedances(series)
            crit = float(special.ndtri(1.0 - view.alpha * rule.share))
            tests.append((ratio_z(rule, events, total), crit, [(rule.name, None)] * ticks))
        elif rule.kind == "fairness":
            pairs = fairness_z(rule, series)
            names = series.slice_names()
            crit = float(special.ndtri(1.0 - view.alpha * rule.share / max(len(pairs), 1)))
            for z, low in pairs:
                tests.append((z, crit, [(rule.name, names[int(i)]) for i in low]))
        else:
            ev = series.events.astype(np.float64)
            tot = series.total.astype(np.float64)
            names = series.slice_names()
            crit = float(special.ndtri(1.0 - view.alpha * rule.share / len(names)))
            for j, name in enumerate(names):
                tests.append(
                    (ratio_z(rule, ev[..., j], tot[..., j]), crit, [(rule.name, name)] * ticks)
                )
    if not tests:
        return NO_ROLLBACK
    over = np.stack([z > crit for z, crit, _ in tests])  # (tests, ticks)
    hit = np.flatnonzero(over.any(axis=0))
    if hit.size == 0:
        return NO_ROLLBACK
    tick = int(hit[0])
    return rollback_at(
        rollout,
        tick,
        [blame[tick] for (_, _, blame), o in zip(tests, over[:, tick], strict=True) if o],
    )
