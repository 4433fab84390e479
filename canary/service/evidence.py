"""Each active rollout's sequential evidence, kept in memory and rebuilt from the store.

The analysis is deterministic, so the store's measurements are the evidence: after a
restart (or when another controller has taken over) the analyzer is rebuilt by replaying
every stored snapshot in tick order, which gives exactly the e-values the rollout had. The
Prometheus source's cursor (per-series last values) is kept with each measurement too, so
the counts continue where they stopped instead of starting again from zero.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from canary.analysis.analyzer import Analyzer, TickResult
from canary.analysis.jsonform import JsonSnapshot
from canary.core.policy import Policy
from canary.store.base import MeasurementOutcome, MeasurementStore


@dataclass
class Evidence:
    """One rollout's analyzer and where its measurements stand."""

    analyzer: Analyzer
    ticks: int = 0  # measurements stored, ok or not (the next tick is ticks + 1)
    source_state: dict[str, Any] | None = None
    last: TickResult | None = None
    consecutive_errors: int = 0
    rebuilt: bool = False


@dataclass
class EvidenceCache:
    store: MeasurementStore
    _items: dict[str, Evidence] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, rollout_id: str, policy: Policy) -> Evidence:
        """The evidence of ``rollout_id``, rebuilt from the store when not in memory."""
        with self._lock:
            evidence = self._items.get(rollout_id)
        if evidence is not None:
            return evidence
        evidence = self.rebuild(rollout_id, policy)
        with self._lock:
            self._items[rollout_id] = evidence
        return evidence

    def rebuild(self, rollout_id: str, policy: Policy) -> Evidence:
        evidence = Evidence(Analyzer(policy), rebuilt=True)
        snapshots: list[JsonSnapshot] = []
        for measurement in self.store.measurements(rollout_id):
            evidence.ticks = max(evidence.ticks, measurement.tick)
            if measurement.outcome is MeasurementOutcome.ERROR:
                evidence.consecutive_errors += 1
                continue
            evidence.consecutive_errors = 0
            analysis = measurement.analysis or {}
            if "source_state" in analysis:  # stores written before the cursors table
                evidence.source_state = analysis["source_state"]
            if measurement.snapshot is not None:
                snapshots.append(as_snapshot(measurement.snapshot))
        cursor = self.store.cursor(rollout_id)
        if cursor is not None:
            evidence.source_state = cursor
        if snapshots:
            # One call over every stored tick: the same results as feeding them one by one,
            # at the cost of a replay (it stops at a rollback tick, as the live run did).
            evidence.last = evidence.analyzer.update_many(snapshots)[-1]
        return evidence

    def forget(self, rollout_id: str) -> None:
        with self._lock:
            self._items.pop(rollout_id, None)


def as_snapshot(line: dict[str, Any]) -> JsonSnapshot:
    """A stored replay-format line as the analyzer's input (metrics left in JSON form)."""
    return JsonSnapshot(
        t=float(line["t"]), canary_weight=float(line["canary_weight"]), metrics=line["metrics"]
    )
