"""Wald's SPRT that knows the true effect: the yardstick for how fast detection can be.

An oracle that knows the baseline's and the canary's true rates can do no better (on
average) than the sequential probability ratio test of "canary = baseline" against "canary
= the truth", stopping the first time the log likelihood ratio reaches log(1/alpha). It is
the lower bound the targets measure canary against. It looks at the same 15 s ticks as
every other method (stopping only at tick ends costs it some overshoot, as it costs them).
Only the upper boundary is used: a rollback is the only decision it must make.

Two versions, because they answer two questions:

- ``arm``: the SPRT on which arm each bad event came from (an error, a request slower than
  a bucket bound, a wrong prediction), given the tick's split of traffic: the information a
  count test comparing the arms has. An event comes from the canary with probability
  theta = rho r / (rho r + 1 - rho) (rho the tick's canary share of requests or labels, r
  the true rate ratio) against rho under the null. For a histogram every bucket is such a
  count with its own ratio. This is the oracle of the 1.3x target (about 828 canary
  requests for 1% -> 2% errors at a 5% share). For frequent events (wrong predictions at
  13%) the binomial form is the usual Poisson approximation.
- ``tolerance``: the which-arm SPRT with H0 at the policy's tolerance (errors may be 10%
  higher, accuracy 0.02 lower) instead of "no difference": the hypothesis canary has to
  reject. Against r = 2 the tolerance alone makes each error carry about 1.3x less
  evidence (KL 0.0131 against 0.0172 nats per error at a 5% share).
- ``request``: the SPRT on the canary's own requests, each a Bernoulli (or, for latency, a
  draw over the buckets) with the baseline's rate known exactly: no baseline noise at all,
  so a lower bound no method comparing two arms can reach (about 765 requests).

For the parity check (four-fifths rule on the canary's own selection rates) there is no
baseline comparison: both versions are the per-request SPRT of the falling group's
approval rate, H0 at the rule's boundary (0.8 x the highest group's true rate) against the
true rate.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from benchmarks.sim.histogram import bucket_probabilities
from benchmarks.sim.outcome import NO_ROLLBACK, Outcome, rollback_at
from benchmarks.sim.rollout import BASELINE, CANARY, Rollout
from benchmarks.sim.simulate import SimConfig

FloatArray = npt.NDArray[np.float64]


def _first_crossing(llr_per_tick: FloatArray, alpha: float) -> int | None:
    hit = np.flatnonzero(np.cumsum(llr_per_tick) >= math.log(1.0 / alpha))
    return int(hit[0]) if hit.size else None


def _per_tick(cumulative: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(cumulative, dtype=np.float64)
    out: FloatArray = np.diff(arr, axis=1, prepend=0.0)
    return out


def sprt_arm(
    bad: npt.ArrayLike,
    volume: npt.ArrayLike,
    ratio: npt.ArrayLike,
    alpha: float,
    null_ratio: float = 1.0,
) -> int | None:
    """First tick where the which-arm SPRT rejects; None if it never does.

    ``bad``: cumulative bad events per arm, tick and cell, shape (2, ticks, cells);
    ``volume``: cumulative requests (or labels) per arm and tick, shape (2, ticks), whose
    per-tick split gives rho; ``ratio``: the true canary/baseline rate ratio per cell;
    ``null_ratio``: the ratio under H0 (1: no difference; 1.1: a 10% tolerance).
    """
    d_bad = _per_tick(bad)
    d_vol = _per_tick(volume)
    both = d_vol[BASELINE] + d_vol[CANARY]
    valid = (d_vol[CANARY] > 0) & (d_vol[BASELINE] > 0)
    rho = np.where(valid, d_vol[CANARY] / np.where(both > 0, both, 1.0), 0.5)[:, None]
    r = np.asarray(ratio, dtype=np.float64)[None, :]
    theta = rho * r / (rho * r + 1.0 - rho)
    theta0 = rho * null_ratio / (rho * null_ratio + 1.0 - rho)
    llr = d_bad[CANARY] * np.log(theta / theta0) + d_bad[BASELINE] * np.log(
        (1.0 - theta) / (1.0 - theta0)
    )
    return _first_crossing(np.where(valid, llr.sum(axis=1), 0.0), alpha)


def sprt_request(cells: npt.ArrayLike, log_ratio: npt.ArrayLike, alpha: float) -> int | None:
    """First tick where the per-request SPRT rejects.

    ``cells``: the canary's cumulative counts per tick and outcome, shape (ticks, cells);
    ``log_ratio``: log(p1 / p0) of each outcome.
    """
    d = np.diff(np.asarray(cells, dtype=np.float64), axis=0, prepend=0.0)
    return _first_crossing(d @ np.asarray(log_ratio, dtype=np.float64), alpha)


def _bernoulli_log_ratio(p1: float, p0: float) -> FloatArray:
    return np.asarray([math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))])


def oracles(
    rollout: Rollout,
    config: SimConfig,
    expected: tuple[str, str | None],
    alpha: float,
    min_ratio: float = 0.8,
    tolerance: tuple[float | None, float | None] = (None, None),
) -> dict[str, Outcome]:
    """The oracle outcomes for the scenario's true effect.

    ``oracle_arm`` and ``oracle_request`` test "canary = baseline"; ``oracle_tolerance``
    is the which-arm SPRT with H0 at the policy's tolerance (``(relative, absolute)`` of the
    regressed check): the hypothesis canary itself has to reject.
    """
    relative, absolute = tolerance
    names = config.names
    metric, where = expected
    base, can = config.baseline, config.canary

    def outcome(tick: int | None) -> Outcome:
        return NO_ROLLBACK if tick is None else rollback_at(rollout, tick, [expected])

    if metric == names.errors:
        series = rollout.ratio(metric)
        bad, vol = series.events, series.total[..., 0]
        arm = sprt_arm(bad, vol, [can.error_rate / base.error_rate], alpha)
        r0 = _null_ratio(base.error_rate, relative, absolute)
        tol = sprt_arm(bad, vol, [can.error_rate / base.error_rate], alpha, r0)
        cells = np.stack([bad[CANARY, :, 0], vol[CANARY] - bad[CANARY, :, 0]], axis=1)
        req = sprt_request(cells, _bernoulli_log_ratio(can.error_rate, base.error_rate), alpha)
    elif metric == names.latency:
        hist = rollout.histogram(metric)
        q0 = bucket_probabilities(config.latency.cdf(config.buckets, base.tail_fraction))
        q1 = bucket_probabilities(config.latency.cdf(config.buckets, can.tail_fraction))
        usable = (q0 > 1e-12) & (q1 > 1e-12)
        ratio = np.where(usable, q1 / np.where(usable, q0, 1.0), 1.0)
        cells = np.diff(hist.counts, axis=2, prepend=0)  # per-bucket counts, cumulative in time
        arm = sprt_arm(cells, hist.counts[..., -1], ratio, alpha)
        tol = arm  # canary's histogram test has no tolerance in these policies
        req = sprt_request(cells[CANARY], np.log(ratio), alpha)
    elif metric == names.accuracy:
        series = rollout.ratio(metric)
        j = series.slice_names().index(where)
        wrong = series.total[..., j] - series.events[..., j]
        p0, p1 = 1.0 - base.accuracy[str(where)], 1.0 - can.accuracy[str(where)]
        arm = sprt_arm(wrong[..., None], series.total[..., j], [p1 / p0], alpha)
        r0 = _null_ratio(p0, relative, absolute)
        tol = sprt_arm(wrong[..., None], series.total[..., j], [p1 / p0], alpha, r0)
        cells = np.stack([wrong[CANARY], series.events[CANARY, :, j]], axis=1)
        req = sprt_request(cells, _bernoulli_log_ratio(p1, p0), alpha)
    elif metric == names.fairness:
        series = rollout.ratio(metric)
        j = series.slice_names().index(where)
        others = [rate for g, rate in can.selection.items() if g != where]
        p0, p1 = min_ratio * max(others), can.selection[str(where)]
        cells = np.stack(
            [series.events[CANARY, :, j], series.total[CANARY, :, j] - series.events[CANARY, :, j]],
            axis=1,
        )
        arm = req = tol = sprt_request(cells, _bernoulli_log_ratio(p1, p0), alpha)
    else:
        raise ValueError(f"no oracle for metric {metric!r}")
    return {
        "oracle_arm": outcome(arm),
        "oracle_request": outcome(req),
        "oracle_tolerance": outcome(tol),
    }


def _null_ratio(bad_rate: float, relative: float | None, absolute: float | None) -> float:
    """The bad-event rate ratio at the tolerance boundary (1 without a tolerance)."""
    if relative is not None:
        return 1.0 + relative
    if absolute is not None:
        return (bad_rate + absolute) / bad_rate
    return 1.0
