"""A seeded simulator of whole rollouts: counts per 15 s tick, drawn in bulk with numpy.

A rollout is a stream of requests split between the baseline and the canary by the
configured share; each request may fail, has a latency (a lognormal body plus an optional
slow tail), belongs to a group, gets a prediction (positive at the group's selection rate)
and, for a fraction of requests, a ground-truth label that arrives minutes later and says
whether the prediction was right (at the group's accuracy). Load may swing over time and
error bursts may hit both arms at once, as an upstream outage does.

Everything is drawn per tick and per arm (Poisson arrivals, binomial splits, multinomial
buckets), never per request, so a one-hour rollout costs about a millisecond; that is what
lets the benchmark afford thousands of rollouts per scenario.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from benchmarks.sim.histogram import bucket_probabilities
from benchmarks.sim.rollout import HistogramCounts, RatioCounts, Rollout, Series
from canary.sim.metrics import LATENCY_BUCKETS_S

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Latency:
    """Request latency: a lognormal body and a slower lognormal tail (seconds)."""

    body_median: float = 0.080
    body_sigma: float = 0.35
    tail_median: float = 0.350
    tail_sigma: float = 0.30

    def cdf(self, x: npt.ArrayLike, tail_fraction: float) -> FloatArray:
        """P(latency <= x) when a share ``tail_fraction`` of requests come from the tail."""
        xs = np.maximum(np.asarray(x, dtype=np.float64), 1e-12)
        body = special.ndtr((np.log(xs) - math.log(self.body_median)) / self.body_sigma)
        tail = special.ndtr((np.log(xs) - math.log(self.tail_median)) / self.tail_sigma)
        result: FloatArray = (1.0 - tail_fraction) * body + tail_fraction * tail
        return result

    def quantile(self, q: float, tail_fraction: float) -> float:
        """The true q-quantile of the latency (what a perfect histogram would show)."""
        return float(
            optimize.brentq(lambda x: float(self.cdf(x, tail_fraction)) - q, 1e-6, 1e3, xtol=1e-9)
        )

    def mean(self, tail_fraction: float) -> float:
        body = self.body_median * math.exp(self.body_sigma**2 / 2)
        tail = self.tail_median * math.exp(self.tail_sigma**2 / 2)
        return (1.0 - tail_fraction) * body + tail_fraction * tail


@dataclass(frozen=True)
class ArmParams:
    """What one arm (a model version) does: its rates, per group where it matters."""

    error_rate: float
    tail_fraction: float
    accuracy: Mapping[str, float]
    selection: Mapping[str, float]


@dataclass(frozen=True)
class Bursts:
    """Error bursts that hit both arms (an outage upstream of both versions).

    Bursts start as a Poisson process; while one lasts, every request of either arm fails
    with an extra probability ``error_rate``.
    """

    per_hour: float = 6.0
    min_duration: float = 60.0
    max_duration: float = 180.0
    error_rate: float = 0.07


@dataclass(frozen=True)
class MetricNames:
    """The policy's names for the four simulated metrics."""

    errors: str = "errors"
    latency: str = "latency"
    accuracy: str = "accuracy"
    fairness: str = "approval_parity"


def _default_groups() -> dict[str, float]:
    return {"a": 0.5, "b": 0.3, "c": 0.2}


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines a simulated rollout except the random draws.

    ``schedule`` lists (start second, canary weight percent); ``groups`` maps each group to
    its share of traffic; ``label_delay`` is the range (seconds) over which labels arrive.
    """

    baseline: ArmParams
    canary: ArmParams
    schedule: tuple[tuple[float, float], ...] = ((0.0, 5.0),)
    duration: float = 3600.0
    interval: float = 15.0
    rps: float = 100.0
    groups: Mapping[str, float] = field(default_factory=_default_groups)
    latency: Latency = Latency()
    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    label_coverage: float = 0.5
    label_delay: tuple[float, float] = (300.0, 900.0)
    load_amplitude: float = 0.0
    load_period: float = 3600.0
    bursts: Bursts | None = None
    names: MetricNames = MetricNames()

    @property
    def ticks(self) -> int:
        return round(self.duration / self.interval)

    def weights(self) -> FloatArray:
        """Configured canary weight (percent) for each tick: the step in force at its start."""
        starts = np.arange(self.ticks) * self.interval
        out = np.zeros(self.ticks)
        for start, weight in sorted(self.schedule):
            out[starts >= start - 1e-9] = weight
        return out


def _burst_cover(
    config: SimConfig, rng: np.random.Generator
) -> tuple[FloatArray, list[list[float]]]:
    """Fraction of each tick covered by a burst, and the bursts as [start, end] seconds."""
    cover = np.zeros(config.ticks)
    spans: list[list[float]] = []
    b = config.bursts
    if b is None or b.per_hour <= 0:
        return cover, spans
    t = 0.0
    while True:
        t += rng.exponential(3600.0 / b.per_hour)
        if t >= config.duration:
            break
        end = min(t + rng.uniform(b.min_duration, b.max_duration), config.duration)
        spans.append([round(t, 3), round(end, 3)])
        edges = np.arange(config.ticks + 1) * config.interval
        overlap = np.clip(np.minimum(edges[1:], end) - np.maximum(edges[:-1], t), 0.0, None)
        cover += overlap / config.interval
        t = end
    return np.minimum(cover, 1.0), spans


def _delay_pmf(config: SimConfig) -> tuple[IntArray, FloatArray]:
    """Label delays in whole ticks (uniform over the configured range) and their weights."""
    low = math.ceil(config.label_delay[0] / config.interval)
    high = math.floor(config.label_delay[1] / config.interval)
    delays = np.arange(low, max(high, low) + 1, dtype=np.int64)
    return delays, np.full(delays.shape[0], 1.0 / delays.shape[0])


def _delayed(
    counts: IntArray, delays: IntArray, pmf: FloatArray, rng: np.random.Generator
) -> IntArray:
    """Per-tick arrivals of labels for requests served at each tick (axis 1 is the tick)."""
    split = rng.multinomial(counts, pmf)  # (..., ticks, groups, delays)
    out = np.zeros_like(counts)
    ticks = counts.shape[1]
    for j, d in enumerate(delays.tolist()):
        if d < ticks:
            out[:, d:, :] += split[:, : ticks - d, :, j]
    return out


def simulate(config: SimConfig, rng: np.random.Generator) -> Rollout:
    """Draw one rollout. Same config and same generator state give the same rollout."""
    ticks = config.ticks
    arms = (config.baseline, config.canary)
    groups = list(config.groups)
    shares = np.asarray([config.groups[g] for g in groups], dtype=np.float64)
    shares = shares / shares.sum()

    # Requests per tick and their split between the arms.
    phase = float(rng.uniform(0.0, 2.0 * math.pi)) if config.load_amplitude > 0 else 0.0
    mid = (np.arange(ticks) + 0.5) * config.interval
    load = 1.0 + config.load_amplitude * np.sin(2.0 * math.pi * mid / config.load_period + phase)
    requests = rng.poisson(config.rps * config.interval * load)
    weight = config.weights()
    canary_n = rng.binomial(requests, weight / 100.0)
    n = np.stack([requests - canary_n, canary_n])  # (2, ticks)

    # Errors, with bursts that raise both arms' rates together.
    cover, spans = _burst_cover(config, rng)
    extra = cover * (config.bursts.error_rate if config.bursts else 0.0)
    base_rates = np.asarray([a.error_rate for a in arms])[:, None]
    p_err = 1.0 - (1.0 - base_rates) * (1.0 - extra[None, :])
    errors = rng.binomial(n, p_err)

    # Latency buckets (non-cumulative draws, then cumulative over le as Prometheus exports).
    bucket_counts = np.stack(
        [
            rng.multinomial(
                n[a], bucket_probabilities(config.latency.cdf(config.buckets, arm.tail_fraction))
            )
            for a, arm in enumerate(arms)
        ]
    )  # (2, ticks, buckets + 1)

    # Groups, predictions and delayed labels.
    by_group = np.stack([rng.multinomial(n[a], shares) for a in range(2)])  # (2, ticks, G)
    sel = np.asarray([[arm.selection[g] for g in groups] for arm in arms])[:, None, :]
    acc = np.asarray([[arm.accuracy[g] for g in groups] for arm in arms])[:, None, :]
    positives = rng.binomial(by_group, sel)
    labelled = rng.binomial(by_group, config.label_coverage)
    correct = rng.binomial(labelled, acc)
    delays, pmf = _delay_pmf(config)
    correct_in = _delayed(correct, delays, pmf, rng)
    wrong_in = _delayed(labelled - correct, delays, pmf, rng)

    def cum(arr: IntArray) -> IntArray:
        out: IntArray = np.cumsum(arr, axis=1, dtype=np.int64)
        return out

    names = config.names
    metrics: dict[str, Series] = {
        names.errors: RatioCounts(events=cum(errors)[..., None], total=cum(n)[..., None]),
        names.latency: HistogramCounts(
            bounds=tuple(config.buckets), counts=np.cumsum(cum(bucket_counts), axis=2)
        ),
        names.accuracy: RatioCounts(
            events=cum(correct_in), total=cum(correct_in + wrong_in), slices=tuple(groups)
        ),
        names.fairness: RatioCounts(
            events=cum(positives), total=cum(by_group), slices=tuple(groups)
        ),
    }
    return Rollout(
        t=(np.arange(ticks, dtype=np.float64) + 1.0) * config.interval,
        weight=weight,
        metrics=metrics,
        exposure_metric=names.errors,
        meta={"bursts": spans, "load_phase": phase},
    )
