"""Snapshots written as replay-format lines (the inverse of the replay reader).

The daemon stores every tick's snapshot in this form and ``canary record`` writes it to
files, so what the daemon saw can be replayed with ``canary replay`` exactly as it was
analysed: one format for the store, for recordings and for backtests.
"""

from __future__ import annotations

import math
from typing import Any

from canary.analysis.snapshot import Buckets, Counts, HistogramArm, RatioArm, Snapshot


def _number(value: float) -> int | float:
    """Whole counts as integers (what people expect to read), fractions as they are."""
    return int(value) if float(value).is_integer() else float(value)


def _counts(counts: Counts) -> dict[str, Any]:
    return {"events": _number(counts.events), "total": _number(counts.total)}


def _buckets(buckets: Buckets) -> list[list[Any]]:
    return [
        ["+Inf" if math.isinf(bound) else bound, _number(count)]
        for bound, count in zip(buckets.bounds, buckets.counts, strict=True)
    ]


def _arm(arm: RatioArm | HistogramArm) -> dict[str, Any]:
    if isinstance(arm, HistogramArm):
        if arm.slices is not None:
            return {"slices": {name: {"buckets": _buckets(b)} for name, b in arm.slices.items()}}
        assert arm.buckets is not None
        return {"buckets": _buckets(arm.buckets)}
    if arm.slices is not None:
        return {"slices": {name: _counts(c) for name, c in arm.slices.items()}}
    assert arm.counts is not None
    return _counts(arm.counts)


def snapshot_line(snapshot: Snapshot) -> dict[str, Any]:
    """One replay-format line (a JSON object) for ``snapshot``."""
    return {
        "t": round(snapshot.t, 3),
        "canary_weight": _number(snapshot.canary_weight),
        "metrics": {
            name: {"baseline": _arm(m.baseline), "canary": _arm(m.canary)}
            for name, m in snapshot.metrics.items()
        },
    }
