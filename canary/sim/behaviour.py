"""The random draws that make a simulated model version good or bad (pure, no I/O).

Kept apart from the HTTP server so that the statistics of the simulation (is the 500 rate
what was asked for, does the slow tail move p99 and not the median) can be checked with a
seeded generator and no process at all.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from canary.sim.config import SimConfig


@dataclass(frozen=True)
class Prediction:
    """One prediction and the truth about it that the label will later reveal."""

    group: str
    predicted: int  # 0 or 1
    correct: bool
    labelled: bool  # False: its label never arrives


@dataclass(frozen=True)
class Outcome:
    """What one request gets: a status, how long it takes, and its predictions."""

    status: int  # 200 or 500
    latency_s: float
    predictions: tuple[Prediction, ...]  # empty when status is 500


class SimulatedModel:
    """Draws outcomes from a ``SimConfig``; safe to share between request threads."""

    def __init__(self, config: SimConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random(config.seed)  # noqa: S311
        self._lock = threading.Lock()

    def latency_s(self) -> float:
        """Base latency, exponential jitter and, with probability tail_prob, the slow tail."""
        cfg = self.config
        with self._lock:
            ms = cfg.latency_ms
            if cfg.jitter_ms > 0:
                ms += self._rng.expovariate(1.0 / cfg.jitter_ms)
            if cfg.tail_prob > 0 and self._rng.random() < cfg.tail_prob:
                ms += cfg.tail_ms
        return ms / 1000.0

    def respond(self, groups: Sequence[str]) -> Outcome:
        """The outcome of one request carrying one record per entry of ``groups``."""
        latency = self.latency_s()
        cfg = self.config
        with self._lock:
            if cfg.error_rate > 0 and self._rng.random() < cfg.error_rate:
                return Outcome(status=500, latency_s=latency, predictions=())
            predictions = tuple(
                Prediction(
                    group=group,
                    predicted=int(self._rng.random() < cfg.positive_rate_of(group)),
                    correct=self._rng.random() < cfg.accuracy_of(group),
                    labelled=self._rng.random() < cfg.label_fraction,
                )
                for group in groups
            )
        return Outcome(status=200, latency_s=latency, predictions=predictions)
