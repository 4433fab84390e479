"""One rollout as arrays of cumulative counts, and the public replay format in and out.

Every method in the benchmark judges the same rollout. canary reads it as a replay file
(JSON Lines, one tick per line, the format in docs and ``canary replay``); the peer methods
read the same counts as numpy arrays, which is what makes a thousand rollouts per scenario
affordable. ``to_replay_lines`` and ``from_replay_lines`` are exact inverses (a unit test
holds them to it), so the arrays and the file are the same rollout, and the peers can also
be run on any recorded replay file.

Shapes: arm is axis 0 (``BASELINE`` = 0, ``CANARY`` = 1), tick is axis 1. Counts are
cumulative since the rollout began, as Prometheus counters are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

BASELINE = 0
CANARY = 1
ARMS = ("baseline", "canary")
INF_LABEL = "+Inf"


class ReplayFormatError(ValueError):
    """A replay line that does not follow the format; the message names source and line."""


@dataclass(frozen=True)
class RatioCounts:
    """events / total per arm, tick and slice: arrays of shape (2, ticks, slices).

    ``slices`` is None for an unsliced metric (one column), else the slice values in order.
    Fairness checks use this shape too, with ``events`` holding the positive predictions.
    """

    events: IntArray
    total: IntArray
    slices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        width = 1 if self.slices is None else len(self.slices)
        for arr in (self.events, self.total):
            if arr.ndim != 3 or arr.shape[0] != 2 or arr.shape[2] != width:
                raise ValueError(f"ratio counts must have shape (2, ticks, {width}): {arr.shape}")
        if self.events.shape != self.total.shape:
            raise ValueError("events and total must have the same shape")

    def slice_names(self) -> list[str | None]:
        """The slice of each column: ``[None]`` for an unsliced metric."""
        return [None] if self.slices is None else list(self.slices)


@dataclass(frozen=True)
class HistogramCounts:
    """Cumulative Prometheus buckets per arm and tick: shape (2, ticks, len(bounds) + 1).

    Cumulative over ``le`` as Prometheus exports them: column j counts requests no slower
    than ``bounds[j]``; the last column is the ``+Inf`` bucket, i.e. every request.
    """

    bounds: tuple[float, ...]
    counts: IntArray

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(self.bounds) or len(set(self.bounds)) != len(self.bounds):
            raise ValueError("bucket bounds must be strictly ascending")
        if self.counts.ndim != 3 or self.counts.shape[0] != 2:
            raise ValueError(
                f"histogram counts must have shape (2, ticks, buckets): {self.counts.shape}"
            )
        if self.counts.shape[2] != len(self.bounds) + 1:
            raise ValueError("histogram counts need one column per bound plus +Inf")


Series = RatioCounts | HistogramCounts


@dataclass(frozen=True)
class Rollout:
    """A whole rollout: tick times, the configured canary weight and every metric's counts."""

    t: FloatArray
    weight: FloatArray
    metrics: Mapping[str, Series]
    exposure_metric: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ticks = self.t.shape[0]
        if self.weight.shape != (ticks,):
            raise ValueError("weight needs one value per tick")
        for name, series in self.metrics.items():
            arr = series.events if isinstance(series, RatioCounts) else series.counts
            if arr.shape[1] != ticks:
                raise ValueError(f"{name}: {arr.shape[1]} ticks, expected {ticks}")
        if not isinstance(self.metrics.get(self.exposure_metric), RatioCounts):
            raise ValueError(f"exposure metric {self.exposure_metric!r} must be a ratio metric")

    @property
    def ticks(self) -> int:
        return int(self.t.shape[0])

    def requests(self) -> IntArray:
        """Cumulative requests per arm and tick, shape (2, ticks): the exposure metric's total.

        This is what "canary requests exposed" counts, the same convention as the replay
        output's ``canary_total`` (the first ratio metric's total on the canary arm).
        """
        series = self.metrics[self.exposure_metric]
        assert isinstance(series, RatioCounts)
        out: IntArray = series.total.sum(axis=2)
        return out

    def ratio(self, name: str) -> RatioCounts:
        series = self.metrics[name]
        if not isinstance(series, RatioCounts):
            raise TypeError(f"{name} is not a ratio metric")
        return series

    def histogram(self, name: str) -> HistogramCounts:
        series = self.metrics[name]
        if not isinstance(series, HistogramCounts):
            raise TypeError(f"{name} is not a histogram metric")
        return series


# --- writing -----------------------------------------------------------------------------


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _ratio_objects(series: RatioCounts) -> list[dict[str, Any]]:
    ev = series.events.tolist()
    tot = series.total.tolist()
    out: list[dict[str, Any]] = []
    for k in range(series.events.shape[1]):
        obj: dict[str, Any] = {}
        for arm, arm_name in enumerate(ARMS):
            if series.slices is None:
                obj[arm_name] = {"events": ev[arm][k][0], "total": tot[arm][k][0]}
            else:
                obj[arm_name] = {
                    "slices": {
                        s: {"events": ev[arm][k][j], "total": tot[arm][k][j]}
                        for j, s in enumerate(series.slices)
                    }
                }
        out.append(obj)
    return out


def _histogram_objects(series: HistogramCounts) -> list[dict[str, Any]]:
    counts = series.counts.tolist()
    les: list[float | str] = [*series.bounds, INF_LABEL]
    out: list[dict[str, Any]] = []
    for k in range(series.counts.shape[1]):
        out.append(
            {
                arm_name: {"buckets": [[le, c] for le, c in zip(les, counts[arm][k], strict=True)]}
                for arm, arm_name in enumerate(ARMS)
            }
        )
    return out


def to_replay_lines(rollout: Rollout) -> list[str]:
    """The rollout as replay-format lines (no trailing newline), one per tick."""
    per_metric = {
        name: _ratio_objects(s) if isinstance(s, RatioCounts) else _histogram_objects(s)
        for name, s in rollout.metrics.items()
    }
    t = rollout.t.tolist()
    w = rollout.weight.tolist()
    return [
        json.dumps(
            {
                "t": float(t[k]),
                "canary_weight": _number(w[k]),
                "metrics": {name: objs[k] for name, objs in per_metric.items()},
            },
            separators=(",", ":"),
        )
        for k in range(rollout.ticks)
    ]


def write_replay(rollout: Rollout, path: Path) -> None:
    """Write the rollout as a replay file."""
    path.write_text("\n".join(to_replay_lines(rollout)) + "\n", encoding="utf-8")


# --- reading -----------------------------------------------------------------------------


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ReplayFormatError(f"{where}: counts must be non-negative numbers, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ReplayFormatError(f"{where}: counts must be whole numbers, got {value!r}")
    return int(value)


class _MetricReader:
    """Collects one metric's per-tick values; a tick that lacks it carries the last one."""

    def __init__(self, kind: str, slices: list[str], bounds: tuple[float, ...]) -> None:
        self.kind = kind
        self.slices = slices
        self.bounds = bounds
        width = len(bounds) + 1 if kind == "histogram" else max(len(slices), 1)
        self.rows: list[list[list[int]]] = []  # per tick: per arm: columns (events then total)
        self.width = width

    def add(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise ReplayFormatError(f"{where}: a metric must be an object")
        row: list[list[int]] = []
        for arm in ARMS:
            arm_obj = obj.get(arm)
            if not isinstance(arm_obj, dict):
                raise ReplayFormatError(f"{where}: missing arm {arm!r}")
            row.append(self._arm(arm_obj, f"{where}.{arm}"))
        self.rows.append(row)

    def _arm(self, obj: dict[str, Any], where: str) -> list[int]:
        if self.kind == "histogram":
            buckets = obj.get("buckets")
            if not isinstance(buckets, list) or len(buckets) != len(self.bounds) + 1:
                raise ReplayFormatError(f"{where}: buckets must list the same bounds every tick")
            les = [b[0] if isinstance(b, list) and len(b) == 2 else None for b in buckets]
            if les[-1] != INF_LABEL or [float(x) for x in les[:-1] if x is not None] != list(
                self.bounds
            ):
                raise ReplayFormatError(f"{where}: bucket bounds changed or +Inf is not last")
            return [_count(b[1], where) for b in buckets]
        if self.slices:
            slices = obj.get("slices")
            if not isinstance(slices, dict):
                raise ReplayFormatError(f"{where}: expected slices")
            ev, tot = [], []
            for s in self.slices:
                cell = slices.get(s, {"events": 0, "total": 0})
                if not isinstance(cell, dict):
                    raise ReplayFormatError(f"{where}.{s}: a slice must be an object")
                ev.append(_count(cell.get("events"), f"{where}.{s}.events"))
                tot.append(_count(cell.get("total"), f"{where}.{s}.total"))
            return ev + tot
        return [
            _count(obj.get("events"), f"{where}.events"),
            _count(obj.get("total"), f"{where}.total"),
        ]

    def series(self) -> Series:
        arr = np.asarray(self.rows, dtype=np.int64).transpose(1, 0, 2)  # (2, ticks, columns)
        if self.kind == "histogram":
            return HistogramCounts(bounds=self.bounds, counts=np.ascontiguousarray(arr))
        width = self.width
        return RatioCounts(
            events=np.ascontiguousarray(arr[:, :, :width]),
            total=np.ascontiguousarray(arr[:, :, width:]),
            slices=tuple(self.slices) if self.slices else None,
        )


def _shape_of(obj: Any, where: str) -> tuple[str, list[str], tuple[float, ...]]:
    """The kind of a metric object: ("histogram", [], bounds) or ("ratio", slices, ())."""
    if not isinstance(obj, dict) or not all(isinstance(obj.get(a), dict) for a in ARMS):
        raise ReplayFormatError(f"{where}: a metric needs baseline and canary objects")
    base, can = obj["baseline"], obj["canary"]
    if "buckets" in base:
        buckets = base["buckets"]
        if not isinstance(buckets, list) or not buckets:
            raise ReplayFormatError(f"{where}: buckets must be a non-empty list")
        try:
            bounds = tuple(float(b[0]) for b in buckets[:-1])
        except (TypeError, ValueError, IndexError) as exc:
            raise ReplayFormatError(f"{where}: bucket bounds must be numbers") from exc
        return "histogram", [], bounds
    if "slices" in base:
        names = list(dict.fromkeys([*base["slices"], *can.get("slices", {})]))
        return "ratio", names, ()
    return "ratio", [], ()


def from_replay_lines(
    lines: Iterable[str], source: str = "<replay>", exposure_metric: str | None = None
) -> Rollout:
    """Parse replay lines into a Rollout; raise ReplayFormatError naming source and line.

    Slices seen only in later ticks count as zero before; a metric absent from a tick keeps
    its previous counts (it had no new data). ``exposure_metric`` defaults to the first
    ratio metric, as ``canary_total`` in the replay output does.
    """
    t: list[float] = []
    weight: list[float] = []
    readers: dict[str, _MetricReader] = {}
    raw: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReplayFormatError(f"{where}: not JSON: {exc.msg}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("metrics"), dict):
            raise ReplayFormatError(f"{where}: a tick needs t, canary_weight and metrics")
        tick_t, tick_w = obj.get("t"), obj.get("canary_weight")
        if not isinstance(tick_t, int | float) or not isinstance(tick_w, int | float):
            raise ReplayFormatError(f"{where}: t and canary_weight must be numbers")
        if t and tick_t <= t[-1]:
            raise ReplayFormatError(f"{where}: t must increase")
        t.append(float(tick_t))
        weight.append(float(tick_w))
        raw.append((number, obj["metrics"]))
        for name, mobj in obj["metrics"].items():
            if name not in readers:
                kind, slices, bounds = _shape_of(mobj, f"{where}: {name}")
                readers[name] = _MetricReader(kind, slices, bounds)
            elif readers[name].slices and isinstance(mobj, dict):
                for arm in ARMS:
                    arm_obj = mobj.get(arm)
                    if isinstance(arm_obj, dict) and isinstance(arm_obj.get("slices"), dict):
                        for s in arm_obj["slices"]:
                            if s not in readers[name].slices:
                                readers[name].slices.append(s)
                                readers[name].width += 1
    if not t:
        raise ReplayFormatError(f"{source}: no ticks")
    for name, reader in readers.items():
        last: Any = None
        for number, metrics in raw:
            mobj = metrics.get(name, last)
            if mobj is None:
                zero = {"events": 0, "total": 0}
                if reader.kind == "histogram":
                    zero_arm: dict[str, Any] = {
                        "buckets": [[b, 0] for b in reader.bounds] + [[INF_LABEL, 0]]
                    }
                elif reader.slices:
                    zero_arm = {"slices": {}}
                else:
                    zero_arm = zero
                mobj = {arm: zero_arm for arm in ARMS}
            reader.add(mobj, f"{source}:{number}: {name}")
            last = mobj
    metrics = {name: reader.series() for name, reader in readers.items()}
    if exposure_metric is None:
        exposure_metric = next((n for n, s in metrics.items() if isinstance(s, RatioCounts)), "")
    for name, series in metrics.items():
        arr = series.total if isinstance(series, RatioCounts) else series.counts
        if np.any(np.diff(arr, axis=1) < 0):
            raise ReplayFormatError(f"{source}: {name}: counts go backwards")
    return Rollout(
        t=np.asarray(t, dtype=np.float64),
        weight=np.asarray(weight, dtype=np.float64),
        metrics=metrics,
        exposure_metric=exposure_metric,
    )


def read_replay(path: Path, exposure_metric: str | None = None) -> Rollout:
    """Read a replay file written by ``write_replay``, ``canary record`` or by hand."""
    with path.open(encoding="utf-8") as handle:
        return from_replay_lines(handle, str(path), exposure_metric)
