"""Cumulative counts since a rollout began, from raw Prometheus counter samples.

Why not ``increase(x[age])``: Prometheus extrapolates ``increase`` to the window's edges, so
it returns fractional and phantom counts, and its window would have to grow every tick. The
sequential tests need exact, monotone counts. So each tick we read the raw counter value of
every series, and add up per-series deltas ourselves:

- a series seen at the first reading is the baseline: what it counted before the rollout
  began is not the rollout's;
- a series that first appears later (a model server that just started, the first 5xx of a
  version) counted everything since it appeared, so its whole value is added;
- a value lower than the last one is a counter reset (the model server restarted): the new
  value is what it counted since the restart, so it is added, never subtracted;
- a series that disappears adds nothing; its last value is kept in case it comes back.

Like Prometheus's own ``rate``, a restart is seen only as a drop: a server that restarts and
counts past its old value between two readings is undercounted (never overcounted). At a
15 s interval that needs a restart and more requests than before it within 15 s.

The state is plain data (JSON-serialisable), persisted with each measurement, so a restarted
daemon continues the same counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SeriesKey = str
Sample = tuple[Mapping[str, str], float]


def series_key(labels: Mapping[str, str]) -> SeriesKey:
    """A stable identity for a series: its sorted label pairs."""
    return "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(labels.items()))


@dataclass
class CounterTracker:
    """Per-series last values and per-group cumulative sums for one query."""

    last: dict[SeriesKey, float] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    started: bool = False

    def update(
        self, samples: Iterable[Sample], group_of: Callable[[Mapping[str, str]], str | None]
    ) -> dict[str, float]:
        """Fold one reading in; return the cumulative count per group since the start.

        ``group_of`` maps a series' labels to the group it counts for (e.g. "canary|b"), or
        None to ignore it.
        """
        first = not self.started
        for labels, value in samples:
            if not math.isfinite(value) or value < 0:
                continue
            group = group_of(labels)
            if group is None:
                continue
            key = series_key(labels)
            previous = self.last.get(key)
            if first:
                delta = 0.0
            elif previous is None:
                delta = value
            elif value >= previous:
                delta = value - previous
            else:
                delta = value  # counter reset: the new value counted since the restart
            self.last[key] = value
            self.totals[group] = self.totals.get(group, 0.0) + delta
        self.started = True
        return dict(self.totals)

    def to_state(self) -> dict[str, Any]:
        return {"last": dict(self.last), "totals": dict(self.totals), "started": self.started}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> CounterTracker:
        return cls(
            last={str(k): float(v) for k, v in state.get("last", {}).items()},
            totals={str(k): float(v) for k, v in state.get("totals", {}).items()},
            started=bool(state.get("started", False)),
        )
