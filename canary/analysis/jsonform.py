"""The JSON form of snapshot counts, as the replay format writes them, parsed strictly.

Why strict. A recorded rollout is evidence; a count that is a string, a boolean, or a bucket
list out of order must stop the replay with a message naming what is wrong, not be coerced
into a number. This module turns the JSON value of one metric into the snapshot types and
raises ``FormatError`` with a path such as ``errors.canary.slices.a.total``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canary.analysis.snapshot import Buckets, Counts, HistogramArm, MetricCounts, RatioArm


class FormatError(Exception):
    """A JSON value that does not have the shape of snapshot counts."""


_INF_NAMES = frozenset({"+Inf", "Inf", "+inf", "inf"})


NUMBER_TYPES = (int, float)


def number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(f"{what} must be a number, not {json.dumps(value)}")
    return float(value)


def _counts_problem(value: Any, what: str) -> str:
    """The message for counts that failed the fast check (slow path, errors only)."""
    if not isinstance(value, dict):
        return f"{what} must be an object with events and total"
    for key in ("events", "total"):
        if key not in value:
            return f"{what} has no {key!r}"
        try:
            number(value[key], f"{what}.{key}")
        except FormatError as exc:
            return str(exc)
    extra = sorted(set(value) - {"events", "total"})
    return f"{what} has unknown key {extra[0]!r}"


def _counts(value: Any, what: str) -> Counts:
    # the hot path of the reader: type() checks rather than helpers (bool is not a number)
    if type(value) is dict and len(value) == 2:
        events = value.get("events")
        total = value.get("total")
        if type(events) in NUMBER_TYPES and type(total) in NUMBER_TYPES:
            return Counts(events, total)  # type: ignore[arg-type]
    raise FormatError(_counts_problem(value, what))


def ratio_arm(value: Any, what: str) -> RatioArm:
    if type(value) is not dict:
        raise FormatError(f"{what} must be an object")
    slices = value.get("slices")
    if slices is None:
        return RatioArm(counts=_counts(value, what))
    if len(value) != 1:
        raise FormatError(f"{what} has both slices and other keys")
    if type(slices) is not dict:
        raise FormatError(f"{what}.slices must be an object")
    return RatioArm(
        slices={name: _counts(counts, f"{what}.slices.{name}") for name, counts in slices.items()}
    )


def _bound(value: Any, what: str) -> float:
    if isinstance(value, str):
        if value in _INF_NAMES:
            return math.inf
        try:
            parsed = float(value)
        except ValueError:
            raise FormatError(f"{what} has bucket bound {value!r}") from None
        if not math.isfinite(parsed):
            raise FormatError(f"{what} has bucket bound {value!r}")
        return parsed
    parsed = number(value, f"{what} bucket bound")
    if not math.isfinite(parsed):
        raise FormatError(f"{what} has bucket bound {parsed!r}")
    return parsed


def parse_bounds(raw: tuple[Any, ...], what: str) -> tuple[float, ...]:
    bounds: list[float] = []
    for item in raw:
        bound = _bound(item, what)
        if bounds and bound <= bounds[-1]:
            raise FormatError(f"{what} bucket bounds must ascend ({bound:g} after {bounds[-1]:g})")
        bounds.append(bound)
    if not bounds or not math.isinf(bounds[-1]):
        raise FormatError(f'{what} must end with the "+Inf" bucket')
    return tuple(bounds)


class BucketReader:
    """Parses bucket lists; the bounds of a histogram repeat on every line, so their parsed
    and validated form is cached by their raw JSON values."""

    def __init__(self) -> None:
        self._bounds: dict[tuple[tuple[Any, ...], tuple[type, ...]], tuple[float, ...]] = {}

    def buckets(self, value: Any, what: str) -> Buckets:
        if type(value) is not list or not value:
            raise FormatError(f"{what} must be a non-empty list of [le, count]")
        try:
            raw = tuple([item[0] for item in value if len(item) == 2])
            counts = tuple([item[1] for item in value])
        except (TypeError, KeyError, IndexError):
            raise FormatError(f"{what} must be a list of [le, count] pairs") from None
        if len(raw) != len(counts):
            raise FormatError(f"{what} must be a list of [le, count] pairs")
        key = (raw, tuple(map(type, raw)))  # 1 == 1.0 == True: equal is not enough
        try:
            bounds = self._bounds.get(key)
        except TypeError:  # a bound that is a list or an object: no cache, parse_bounds says
            bounds = None
        if bounds is None:
            bounds = parse_bounds(raw, what)
            if len(self._bounds) < 64:
                self._bounds[key] = bounds
        for count in counts:
            if type(count) not in NUMBER_TYPES:
                number(count, f"{what} bucket count")
        return Buckets(bounds, counts)

    def arm(self, value: Any, what: str) -> HistogramArm:
        if type(value) is not dict or len(value) != 1:
            raise FormatError(f"{what} must be an object with buckets or slices")
        if "buckets" in value:
            return HistogramArm(buckets=self.buckets(value["buckets"], f"{what}.buckets"))
        slices = value.get("slices")
        if type(slices) is not dict:
            raise FormatError(f"{what} must have buckets or slices")
        parsed: dict[str, Buckets] = {}
        for name, item in slices.items():
            if type(item) is not dict or len(item) != 1 or "buckets" not in item:
                raise FormatError(f"{what}.slices.{name} must be an object with buckets")
            parsed[name] = self.buckets(item["buckets"], f"{what}.slices.{name}.buckets")
        return HistogramArm(slices=parsed)


_BUCKETS = BucketReader()


def parse_metric(value: Any, histogram: bool, name: str) -> MetricCounts:
    """Both arms of one metric from its JSON value (``{"baseline": ..., "canary": ...}``)."""
    if (
        type(value) is not dict
        or len(value) != 2
        or "baseline" not in value
        or "canary" not in value
    ):
        raise FormatError(f"metric {name!r} must have exactly baseline and canary")
    arm = _BUCKETS.arm if histogram else ratio_arm
    return MetricCounts(
        baseline=arm(value["baseline"], f"{name}.baseline"),
        canary=arm(value["canary"], f"{name}.canary"),
    )


@dataclass(frozen=True, slots=True)
class JsonSnapshot:
    """A tick as the replay reader leaves it: the metrics still in their JSON form.

    The analyzer reads counts straight from the JSON values (after the same checks
    ``parse_metric`` makes), which keeps a replay of thousands of files fast; anything
    irregular goes through ``parse_metric`` so both forms always mean the same counts.
    """

    t: float
    canary_weight: float
    metrics: Mapping[str, Any]
