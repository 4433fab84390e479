"""The incremental analyzer: one snapshot per tick in, the evidence and a verdict out.

Why incremental and deterministic. The daemon feeds one snapshot per tick and must, after a
crash, rebuild exactly the same evidence by feeding the stored snapshots again; the replay
command feeds a whole recorded rollout at once. Both go through ``decide``: a block of
snapshots is checked and evaluated as arrays, the first tick that rolls back (if any) is
found, and the state is kept as it was at that tick (the replay's compiled reader,
``canary.analysis.fast_replay``, hands ``decide`` rows it read itself). Floating-point sums
are accumulated in the same order whatever the block size, so one-by-one and all-at-once
give identical numbers.

The rollback rule is the weighted average of every metric's e-process against 1/alpha; the
breaches named are the tests past their own weighted Bonferroni threshold (see
``canary.stats.combine``). Data problems are outcomes per metric ("missing", "invalid"), never
exceptions: the daemon counts them against ``on_no_data`` and ``on_query_error``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from canary.analysis.fairness_check import FairnessAnalysis
from canary.analysis.histogram_metric import HistogramAnalysis
from canary.analysis.jsonform import JsonSnapshot
from canary.analysis.metric_base import (
    INVALID,
    MISSING,
    OK,
    WAITING,
    MetricAnalysis,
    Prepared,
)
from canary.analysis.ratio_metric import RatioAnalysis
from canary.analysis.snapshot import Snapshot
from canary.core.policy import Analysis, HistogramMetric, Policy, RatioMetric
from canary.stats.combine import log_average, normalise

STATE_VERSION = 1

# Cap on the ticks evaluated as one array block (memory: ticks x tests x grid points).
MAX_BLOCK = 512

__all__ = [
    "INVALID",
    "MISSING",
    "OK",
    "WAITING",
    "Analyzer",
    "Breach",
    "MetricStatus",
    "TickResult",
]


@dataclass(frozen=True, slots=True)
class Breach:
    """A metric (and slice) with enough evidence of harm to be named on its own.

    ``estimate`` and ``interval`` are in the units of the metric's test (docs/statistics.md):
    a rate ratio canary/baseline for count tests, a difference or ratio of rates for contrast
    tests, a selection-rate ratio or gap increase for fairness checks. A None end of the
    interval is unbounded.
    """

    metric: str
    slice: str | None
    e_value: float
    estimate: float | None
    interval: tuple[float | None, float | None]
    measure: str = ""  # what estimate and interval are, in words


@dataclass(frozen=True, slots=True)
class MetricStatus:
    """One metric at one tick.

    ``status``: ok, waiting (no data yet), missing (not in the snapshot) or invalid (counts
    that cannot be right; ``problem`` says why). ``enough``: the metric has seen the minimum
    sample (``progress`` is the fraction of it reached). ``idle_for``: seconds since the
    canary arm last had new observations for this metric (or since the start).
    """

    status: str
    problem: str | None
    e_value: float
    enough: bool
    progress: float
    idle_for: float


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The last result of a run and the first data problem met (snapshot index, message)."""

    last: TickResult
    problem: tuple[int, str] | None


@dataclass(frozen=True, slots=True)
class TickResult:
    """The evidence after one tick and what it decides."""

    tick: int  # 1-based position of the snapshot in the rollout
    t: float
    canary_weight: float
    e_value: float  # weighted average of every metric's e-process
    rollback: bool
    breaches: tuple[Breach, ...]
    enough: bool  # every metric has seen its minimum sample
    canary_total: float
    metrics: dict[str, MetricStatus]


def _exp(log_value: float) -> float:
    return math.exp(min(log_value, 700.0))


class Analyzer:
    """Evidence for one rollout under one policy; feed snapshots in tick order."""

    def __init__(self, policy: Policy | Analysis) -> None:
        analysis = policy.analysis if isinstance(policy, Policy) else policy
        self.alpha = analysis.alpha
        items = [*analysis.metrics, *analysis.fairness]
        shares = normalise(np.array([item.weight for item in items]))
        self.metrics: list[MetricAnalysis] = []
        for item, share in zip(items, shares.tolist(), strict=True):
            if isinstance(item, RatioMetric):
                self.metrics.append(RatioAnalysis(item, share, analysis.alpha, analysis.power))
            elif isinstance(item, HistogramMetric):
                self.metrics.append(HistogramAnalysis(item, share, analysis.alpha, analysis.power))
            else:
                self.metrics.append(FairnessAnalysis(item, share, analysis.alpha, analysis.power))
        self.shares = shares
        self._log_threshold = math.log(1.0 / analysis.alpha)
        # which metric counts canary requests: the first ratio metric, else the first one
        ratio_first = [i for i, item in enumerate(items) if isinstance(item, RatioMetric)]
        self._total_metric = ratio_first[0] if ratio_first else 0
        self.ticks = 0
        self.rolled_back = False
        self._last_new_data = [0.0] * len(self.metrics)  # t of the last growth per metric
        self._last_canary = [0.0] * len(self.metrics)

    def state(self) -> dict[str, Any]:
        """The evidence so far as JSON values: ``Analyzer.from_state(policy, state)`` goes on
        exactly where this one is (the daemon may also simply replay its stored snapshots)."""
        return {
            "version": STATE_VERSION,
            "ticks": self.ticks,
            "rolled_back": self.rolled_back,
            "last_new_data": list(self._last_new_data),
            "last_canary": list(self._last_canary),
            "metrics": {m.name: m.state() for m in self.metrics},
        }

    @classmethod
    def from_state(cls, policy: Policy | Analysis, state: dict[str, Any]) -> Analyzer:
        """An analyzer for ``policy`` restored from ``state()``; ValueError if they differ."""
        analyzer = cls(policy)
        if state.get("version") != STATE_VERSION or set(state.get("metrics", {})) != set(
            analyzer.names
        ):
            raise ValueError("the state was saved by another version or for another policy")
        analyzer.ticks = int(state["ticks"])
        analyzer.rolled_back = bool(state["rolled_back"])
        analyzer._last_new_data = [float(v) for v in state["last_new_data"]]
        analyzer._last_canary = [float(v) for v in state["last_canary"]]
        for metric in analyzer.metrics:
            metric.restore(state["metrics"][metric.name])
        return analyzer

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def update(self, snapshot: Snapshot | JsonSnapshot) -> TickResult:
        """Add one tick. After a rollback the analyzer is finished and refuses more ticks."""
        return self.update_many([snapshot])[0]

    def update_many(self, snapshots: Sequence[Snapshot | JsonSnapshot]) -> list[TickResult]:
        """Add ticks in order; stop after the first tick that rolls back.

        Returns one result per tick consumed: all of them, or up to and including the
        rollback tick.
        """
        if self.rolled_back:
            raise RuntimeError("the analyzer rolled back already; start a new one")
        return self._consume(snapshots)

    def run(self, snapshots: Sequence[Snapshot | JsonSnapshot]) -> RunSummary:
        """Add ticks like ``update_many`` but keep only the last result (the rollback tick or
        the last tick) and the first data problem: what a replay without ``--ticks`` needs,
        at a fraction of the cost of a result per tick."""
        if self.rolled_back:
            raise RuntimeError("the analyzer rolled back already; start a new one")
        if not snapshots:
            raise ValueError("no snapshots")
        last: TickResult | None = None
        problem: tuple[int, str] | None = None
        for begin in range(0, len(snapshots), MAX_BLOCK):
            results, found = self._block(snapshots[begin : begin + MAX_BLOCK], full=False)
            last = results[-1]
            if problem is None and found is not None:
                problem = (begin + found[0], found[1])
            if last.rollback:
                break
        assert last is not None
        return RunSummary(last=last, problem=problem)

    def _consume(self, snapshots: Sequence[Snapshot | JsonSnapshot]) -> list[TickResult]:
        results: list[TickResult] = []
        for begin in range(0, len(snapshots), MAX_BLOCK):
            block_results = self._block(snapshots[begin : begin + MAX_BLOCK], full=True)[0]
            results += block_results
            if block_results and block_results[-1].rollback:
                break  # the rollout ended at that tick
        return results

    def _block(
        self, block: Sequence[Snapshot | JsonSnapshot], full: bool
    ) -> tuple[list[TickResult], tuple[int, str] | None]:
        """Evaluate a block; results for every tick (``full``) or only the last one, and the
        first (tick index, problem) of a metric that was missing or invalid."""
        prepared = [m.prepare(block) for m in self.metrics]
        return self.decide(
            prepared, [snap.t for snap in block], [snap.canary_weight for snap in block], full
        )

    def decide(
        self,
        prepared: Sequence[Prepared],
        times: Sequence[float],
        weights: Sequence[float],
        full: bool,
    ) -> tuple[list[TickResult], tuple[int, str] | None]:
        """Evaluate a block whose rows every metric has prepared (``MetricAnalysis.prepare``,
        or ``prepare_rows`` for rows read some other way), with the ticks' ``times`` and
        canary ``weights``; what ``_block`` returns. The one place evidence becomes a decision,
        whichever way the counts were read."""
        k_total = len(times)
        evaluations = [m.evaluate(p) for m, p in zip(self.metrics, prepared, strict=True)]
        per_metric = np.stack([e.log_e for e in evaluations], axis=1)  # (K, M)
        combined = log_average(per_metric, self.shares)
        crossed = np.nonzero(combined >= self._log_threshold)[0]
        end = int(crossed[0]) + 1 if crossed.size else k_total
        for evaluation in evaluations:
            evaluation.commit(end - 1)
        rolled = bool(crossed.size)
        self.rolled_back = rolled

        first_problem: tuple[int, str] | None = None
        for prep in prepared:
            for k, status in enumerate(prep.status[:end]):
                if status in (INVALID, MISSING):
                    if first_problem is None or k < first_problem[0]:
                        first_problem = (k, prep.problems[k] or status)
                    break

        times_now = np.array(times[:end])
        canary_now: list[list[float]] = []
        idle: list[list[float]] = []
        for index, (metric, prep) in enumerate(zip(self.metrics, prepared, strict=True)):
            cols = metric.canary_columns(prep.layout)
            values = prep.rows[:end, cols].sum(axis=1) if cols else np.zeros(end)
            # time of the last tick whose canary count grew, carried across blocks
            grew = (
                values
                > np.maximum.accumulate(np.concatenate([[self._last_canary[index]], values]))[:-1]
            )
            last_t = np.where(grew, times_now, -np.inf)
            last_t = np.maximum.accumulate(np.concatenate([[self._last_new_data[index]], last_t]))
            idle.append((times_now - last_t[1:]).tolist())
            self._last_new_data[index] = float(last_t[-1])
            self._last_canary[index] = max(self._last_canary[index], float(values.max()))
            canary_now.append(values.tolist())
        e_metric = [np.exp(np.minimum(e.log_e[:end], 700.0)).tolist() for e in evaluations]
        enough_metric = [e.enough[:end].tolist() for e in evaluations]
        progress_metric = [e.progress[:end].tolist() for e in evaluations]
        e_total = np.exp(np.minimum(combined[:end], 700.0)).tolist()
        names = self.names
        n_metrics = len(self.metrics)
        first_tick = self.ticks + 1
        self.ticks += end
        results: list[TickResult] = []
        for k in range(0 if full else end - 1, end):
            statuses: dict[str, MetricStatus] = {}
            all_enough = True
            for i in range(n_metrics):
                enough = enough_metric[i][k]
                all_enough = all_enough and enough
                prep = prepared[i]
                statuses[names[i]] = MetricStatus(
                    prep.status[k],
                    prep.problems[k],
                    e_metric[i][k],
                    enough,
                    progress_metric[i][k],
                    idle[i][k],
                )
            is_rollback = rolled and k == end - 1
            results.append(
                TickResult(
                    first_tick + k,
                    times[k],
                    weights[k],
                    e_total[k],
                    is_rollback,
                    self._breaches(evaluations, k) if is_rollback else (),
                    all_enough,
                    canary_now[self._total_metric][k],
                    statuses,
                )
            )
        return results, first_problem

    def _breaches(self, evaluations: Sequence[object], k: int) -> tuple[Breach, ...]:
        """Tests past their own threshold 1/(w alpha); if none is (the average crossed on
        several moderate e-values), the largest contributor w E, so a rollback always says
        where to look."""
        found: list[tuple[float, MetricAnalysis, int, float]] = []
        best: tuple[float, MetricAnalysis, int, float] | None = None
        for metric, evaluation in zip(self.metrics, evaluations, strict=True):
            if metric.tests is None:
                continue
            log_tests = evaluation.log_e_tests[k]  # type: ignore[attr-defined]
            for test in range(len(metric.tests.labels)):
                weight = metric.share * float(metric.tests.shares[test])
                log_e = float(log_tests[test])
                contribution = log_e + math.log(weight)
                item = (contribution, metric, test, log_e)
                if log_e >= math.log(1.0 / (weight * self.alpha)):
                    found.append(item)
                if best is None or contribution > best[0]:
                    best = item
        if not found and best is not None:
            found = [best]
        found.sort(key=lambda item: -item[0])
        breaches = []
        for _, metric, test, log_e in found:
            detail = metric.detail(test)
            breaches.append(
                Breach(
                    metric=metric.name,
                    slice=detail.slice,
                    e_value=_exp(log_e),
                    estimate=detail.estimate,
                    interval=detail.interval,
                    measure=detail.measure,
                )
            )
        return tuple(breaches)
