"""A reader of the replay format compiled for one file's shape: counts into arrays in one pass.

Why. A recorded rollout repeats one shape on every line (the same metrics, slices and bucket
bounds; only the counts change), and decoding each line into dicts and then walking them for
counts cost more than the statistics. So the reader looks at the first line once and compiles
from its shape (cached: thousands of files share one) a typed ``msgspec`` schema, whose
decoded objects the cyclic garbage collector does not track and which itself holds every
line to the first line's keys, slices, bucket bounds and list lengths; it decodes the whole
file in one call, reads every count of a tick with one generated function, and hands each
metric its rows as one array. The statistics then run on the same blocks of ticks as for any
other reader (``Analyzer.decide``), so the numbers are the same to the last bit.

Why it can say no. This reader only takes files where it is sure to mean exactly what the
strict reader (``canary.analysis.replay``) means: every line has the first line's shape and
bucket bounds, every count is a non-negative JSON number, ``t`` increases, the weights are
within 0..100, and every metric's rows pass ``check_rows``. Anything else (a slice that
appears later, a malformed line, counts that go backwards) makes it return None, and the
caller replays the file with the strict reader, which names the file and line that is wrong.
Which count feeds which column of a metric's rows is not written down twice: it is found by
running the metric's own ``_layout_from`` and ``_row`` on the first line with probe counts.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from canary.analysis.analyzer import MAX_BLOCK, Analyzer, TickResult
from canary.analysis.metric_base import MetricAnalysis, Prepared, StructuralError
from canary.core.policy import Policy

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

# Compiled shapes kept (one per policy and file shape; a replay of one recording has one).
CACHE_LIMIT = 64

# What ``_layout_at`` answers for a tick the metric's own reader refuses: equal to no layout.
_REFUSED = object()


class _UnusableError(Exception):
    """The first line has a shape this reader does not compile (the strict reader decides)."""


@dataclass(frozen=True)
class _Count:
    """A count in the template of a metric's JSON value: column ``index`` of the count table."""

    index: int


@dataclass(frozen=True)
class _Const:
    """A value that must be the same on every line (a bucket bound, a string)."""

    value: Any


# A metric's JSON value with its counts replaced by _Count (dicts keep the key order).
Template = dict[str, "Template"] | list["Template"] | _Count | _Const


@dataclass(frozen=True)
class _Columns:
    """Where one metric's rows come from: ``sources[c]`` is the count-table column of row
    column ``c`` (-1: always zero), for the ``layout`` every tick with data sets up."""

    layout: Any
    sources: IntArray
    template: Template

    def rows(self, table: FloatArray) -> FloatArray:
        if bool(np.all(self.sources >= 0)):
            rows: FloatArray = table[:, self.sources]
            return rows
        rows = np.zeros((table.shape[0], self.sources.size))
        used = self.sources >= 0
        rows[:, used] = table[:, self.sources[used]]
        return rows


@dataclass(frozen=True)
class _Shape:
    """A compiled file shape: the decoder, the getters and each metric's columns."""

    decoder: msgspec.json.Decoder[list[Any]]
    counts: Callable[[Any], tuple[float, ...]]  # t, canary_weight, then every count
    columns: list[_Columns]


_CACHE: dict[tuple[Any, ...], _Shape | None] = {}  # by policy and first-line shape
_LAST: dict[tuple[Any, ...], _Shape] = {}  # by policy: the shape the last file had


def _rebuild(template: Template, values: Sequence[float]) -> Any:
    """The JSON value a line holds, from the template and that line's counts."""
    if isinstance(template, _Count):
        return values[template.index]
    if isinstance(template, _Const):
        return template.value
    if isinstance(template, dict):
        return {key: _rebuild(item, values) for key, item in template.items()}
    return [_rebuild(item, values) for item in template]


class _Compiler:
    """Walks the first line's metric values into a schema, getter paths and templates."""

    def __init__(self) -> None:
        self.count_paths: list[str] = []
        self._names = 0

    def _name(self, kind: str) -> str:
        self._names += 1
        return f"{kind}{self._names}"

    def walk(self, value: Any, path: str, first_in_list: bool) -> tuple[Any, Template]:
        """(msgspec type, template) of one JSON value: objects and lists must keep their keys
        and lengths; numbers are counts, except the first item of a list (a bucket bound),
        which, like any string, must stay the same."""
        if type(value) is dict:
            fields: list[tuple[str, Any]] = []
            rename: dict[str, str] = {}
            template: dict[str, Template] = {}
            for index, (key, item) in enumerate(value.items()):
                field = f"f{index}"
                kind, template[key] = self.walk(item, f"{path}.{field}", False)
                fields.append((field, kind))
                rename[field] = key
            struct = msgspec.defstruct(
                self._name("Object"), fields, rename=rename, forbid_unknown_fields=True, gc=False
            )
            return struct, template
        if type(value) is list:
            fields = []
            items: list[Template] = []
            for index, item in enumerate(value):
                kind, sub = self.walk(item, f"{path}.f{index}", index == 0)
                fields.append((f"f{index}", kind))
                items.append(sub)
            struct = msgspec.defstruct(
                self._name("Array"), fields, array_like=True, forbid_unknown_fields=True, gc=False
            )
            return struct, items
        if type(value) in (int, float):
            if first_in_list:  # the decoder itself holds every line to the same number
                bound = float(value)
                return Annotated[float, msgspec.Meta(ge=bound, le=bound)], _Const(bound)
            self.count_paths.append(path)
            return float, _Count(2 + len(self.count_paths) - 1)  # after t and canary_weight
        if type(value) is str:
            return Literal[value], _Const(value)
        raise _UnusableError


def _signature(value: Any, first_in_list: bool = False) -> Any:
    """The first line's shape with the counts left out: the key of the compiled shapes."""
    if type(value) is dict:
        return ("{", tuple((key, _signature(item)) for key, item in value.items()))
    if type(value) is list:
        return ("[", tuple(_signature(item, index == 0) for index, item in enumerate(value)))
    if type(value) in (int, float) and not first_in_list:
        return "n"
    return (type(value).__name__, value)


def _columns(metric: MetricAnalysis, template: Template, n_counts: int) -> _Columns:
    """The metric's layout and the source of each row column, found by probing its own
    ``_layout_from`` and ``_row`` with distinct counts; raises _UnusableError when the rows
    are not a plain selection of counts (or the shape never sets the metric up)."""
    codes = [float(index) for index in range(n_counts)]  # count column i holds i (>= 2)
    try:
        sample = metric._canonical(_rebuild(template, codes))
        layout = metric._layout_from(sample)
        if layout is None:
            raise _UnusableError
        row = metric._row(sample, layout)
    except StructuralError:
        raise _UnusableError from None
    if any(value != 0 and not 2 <= value < n_counts for value in row):
        raise _UnusableError
    if any(value != int(value) for value in row):
        raise _UnusableError
    sources = np.array([int(value) if value else -1 for value in row], dtype=np.intp)
    # a second probe with unrelated values: a column that sums counts would not match
    check = [math.sqrt(2.0 + index) for index in range(n_counts)]
    try:
        sample = metric._canonical(_rebuild(template, check))
        check_row = metric._row(sample, layout)
    except StructuralError:
        raise _UnusableError from None
    expected = [check[source] if source >= 0 else 0.0 for source in sources.tolist()]
    if [float(value) for value in check_row] != expected:
        raise _UnusableError
    return _Columns(layout=layout, sources=sources, template=template)


def _compile(analyzer: Analyzer, first: dict[str, Any]) -> _Shape:
    compiler = _Compiler()
    metrics_value = first["metrics"]
    fields: list[tuple[str, Any]] = []
    rename: dict[str, str] = {}
    templates: list[Template] = []
    for index, metric in enumerate(analyzer.metrics):
        kind, template = compiler.walk(metrics_value[metric.name], f"m.f{index}", False)
        fields.append((f"f{index}", kind))
        rename[f"f{index}"] = metric.name
        templates.append(template)
    n_counts = 2 + len(compiler.count_paths)
    columns = [
        _columns(metric, template, n_counts)
        for metric, template in zip(analyzer.metrics, templates, strict=True)
    ]
    # unknown metrics and keys are ignored, as the strict reader ignores them
    metrics_struct = msgspec.defstruct("Metrics", fields, rename=rename, gc=False)
    tick = msgspec.defstruct(
        "Tick",
        [("t", float), ("w", float), ("m", metrics_struct)],
        rename={"t": "t", "w": "canary_weight", "m": "metrics"},
        gc=False,
    )
    return _Shape(
        decoder=msgspec.json.Decoder(list[tick]),  # type: ignore[valid-type]
        counts=_getter(["t", "w", *compiler.count_paths]),
        columns=columns,
    )


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def _getter(paths: list[str]) -> Callable[[Any], tuple[float, ...]]:
    """One function reading every path (``m.f0.f1.f0``) of a decoded tick into a tuple.

    Generated (as ``dataclasses`` generates methods) so that each object on the way is
    fetched once, not once per count below it as ``operator.attrgetter`` does: a third of
    the cost of reading the counts. The source holds only names this module made up.
    """
    if not all(part.isidentifier() for path in paths for part in path.split(".")):
        raise _UnusableError
    uses = Counter(prefix for path in paths for prefix in _prefixes(path))
    body: list[str] = []
    names: dict[str, str] = {"": "tick"}

    def ref(path: str) -> str:
        if path in names:
            return names[path]
        parent, _, attr = path.rpartition(".")
        expr = f"{ref(parent)}.{attr}"
        if uses[path] < 2:
            return expr
        names[path] = f"v{len(names)}"
        body.append(f"    {names[path]} = {expr}")
        return names[path]

    values = [ref(path) for path in paths]
    source = "\n".join(["def counts(tick):", *body, f"    return ({', '.join(values)},)"])
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - generated from this module's own names
    getter: Callable[[Any], tuple[float, ...]] = namespace["counts"]
    return getter


def _shape(analyzer: Analyzer, policy_key: tuple[Any, ...], first: Any) -> _Shape | None:
    if type(first) is not dict or type(first.get("metrics")) is not dict:
        return None
    metrics_value = first["metrics"]
    if any(metric.name not in metrics_value for metric in analyzer.metrics):
        return None
    key = (
        policy_key,
        tuple(_signature(metrics_value[metric.name]) for metric in analyzer.metrics),
    )
    if key in _CACHE:
        return _CACHE[key]
    try:
        shape: _Shape | None = _compile(analyzer, first)
    except (_UnusableError, ValueError, TypeError):  # msgspec refuses some names (quotes, ...)
        shape = None
    if len(_CACHE) >= CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[key] = shape
    return shape


def _policy_key(analyzer: Analyzer) -> tuple[Any, ...]:
    """What the compiled shapes depend on: each metric's kind, name and settings."""
    return tuple(
        (
            type(metric).__name__,
            metric.name,
            repr(getattr(metric, "metric", None) or getattr(metric, "check", None)),
        )
        for metric in analyzer.metrics
    )


@dataclass(frozen=True)
class FastRun:
    """What the compiled reader found: the last result, and every result when asked for."""

    last: TickResult
    results: list[TickResult] | None


def _layout_at(
    metric: MetricAnalysis, columns: _Columns, table: FloatArray, offset: int
) -> Callable[[int], Any]:
    """The layout tick ``offset + k`` sets up, read exactly as the strict reader reads it."""

    def layout_at(k: int) -> Any:
        try:
            sample = metric._canonical(_rebuild(columns.template, table[offset + k].tolist()))
            return metric._layout_from(sample)
        except StructuralError:
            return _REFUSED  # the strict reader takes the file and names the problem

    return layout_at


def _decode(shape: _Shape, text: str) -> list[Any] | None:
    try:
        return shape.decoder.decode(text)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None


def read_table(analyzer: Analyzer, lines: list[str]) -> tuple[_Shape, FloatArray] | None:
    """The file's compiled shape and every tick's t, canary weight and counts (K, 2 + C), or
    None when the strict reader must read the file."""
    kept = [line for line in lines if line.strip()]
    if not kept:
        return None
    text = "[" + ",".join(kept) + "]"
    if "\n" in text:
        return None  # the strict reader decodes such lines one by one
    policy_key = _policy_key(analyzer)
    # Most files of a replay share the last file's shape: a file that decodes with it has
    # exactly that shape (up to key order and int/float spelling, which change nothing), so
    # the first line need not be looked at again.
    shape = _LAST.get(policy_key)
    ticks = None if shape is None else _decode(shape, text)
    if ticks is None:
        try:
            first = json.loads(kept[0])
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            return None
        shape = _shape(analyzer, policy_key, first)
        if shape is None:
            return None
        ticks = _decode(shape, text)
        if ticks is None:
            return None
        if len(_LAST) >= CACHE_LIMIT:
            _LAST.clear()
        _LAST[policy_key] = shape
    if shape is None or len(ticks) != len(kept):
        return None  # (a line that holds two ticks)
    table: FloatArray = np.array(list(map(shape.counts, ticks)), dtype=np.float64)
    t, weight = table[:, 0], table[:, 1]
    if not (
        bool(np.all(np.isfinite(t)))
        and bool(np.all((weight >= 0) & (weight <= 100)))
        and bool(t[0] >= 0)
        and bool(np.all(t[1:] > t[:-1]))
        and bool(np.all(table[:, 2:] >= 0))
    ):
        return None
    return shape, table


def fast_run(policy: Policy, lines: list[str], full: bool) -> FastRun | None:
    """The analysis of one file's lines read by the compiled reader, or None when the file
    must be read by the strict one (see the module docstring)."""
    analyzer = Analyzer(policy)
    read = read_table(analyzer, lines)
    if read is None:
        return None
    shape, table = read
    times: list[float] = table[:, 0].tolist()
    weights: list[float] = table[:, 1].tolist()
    results: list[TickResult] = []
    last: TickResult | None = None
    for begin in range(0, table.shape[0], MAX_BLOCK):
        block = table[begin : begin + MAX_BLOCK]
        prepared: list[Prepared] = []
        for metric, columns in zip(analyzer.metrics, shape.columns, strict=True):
            found = metric.prepare_rows(
                columns.rows(block), columns.layout, _layout_at(metric, columns, table, begin)
            )
            if found is None:
                return None
            prepared.append(found)
        block_results, _ = analyzer.decide(
            prepared, times[begin : begin + MAX_BLOCK], weights[begin : begin + MAX_BLOCK], full
        )
        if full:
            results += block_results
        last = block_results[-1]
        if last.rollback:
            break
    assert last is not None
    return FastRun(last=last, results=results if full else None)
