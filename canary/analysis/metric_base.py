"""One policy metric (ratio, histogram or fairness check) turned into a set of tests.

Why a setup step. Which slices a metric has, which bucket bounds a histogram uses and how
much of the metric's share of alpha each bound gets are only known from data. They are fixed
once, at the first tick where the metric has data (its *setup*), and never change: the weights
of an average of e-processes must not depend on the evidence they weigh. A histogram's bound
weights look at the baseline's distribution, so a histogram's evidence starts after its setup
tick; a ratio metric or fairness check only looks at which slices exist, so its evidence
includes the setup tick. A slice that first appears later still counts in the pooled test.

Why "prepare / evaluate / commit". A block of ticks is first checked and evaluated as arrays
(fast, and free of side effects), then the analyzer finds the first tick that rolls back and
commits each metric's state at that tick: the evidence after a decision never leaks into it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from canary.analysis.checks import RowRules, check_rows
from canary.analysis.jsonform import (
    NUMBER_TYPES,
    FormatError,
    JsonSnapshot,
    parse_metric,
)
from canary.analysis.snapshot import HistogramArm, MetricCounts, RatioArm, Snapshot

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


WAITING = "waiting"  # no data yet: the metric's tests do not exist
OK = "ok"
MISSING = "missing"  # the snapshot has no counts for the metric
INVALID = "invalid"  # counts that cannot be right (backwards, negative, inconsistent)

# Stands for the slices that first appeared after setup, summed into one column group that
# counts in the pooled test only (never a label value: label values cannot hold NUL).
LATER = "\x00later"


class StructuralError(Exception):
    """A snapshot whose shape does not fit the metric (e.g. a slice or bucket vanished)."""


class IrregularError(Exception):
    """The fast JSON reader met something it does not handle; take the canonical path."""


# what a malformed JSON value can raise in the fast readers (they then defer to the parser)
FAST_FAILURES = (IrregularError, KeyError, TypeError, IndexError, ValueError, AttributeError)
NUMBER_SET = frozenset(NUMBER_TYPES)


def numbers_only(values: list[Any]) -> bool:
    return set(map(type, values)) <= NUMBER_SET


@dataclass
class Prepared:
    """A block checked and turned into rows of cumulative counts."""

    rows: FloatArray  # (K, F) cumulative counts, invalid rows carried forward
    status: list[str]
    problems: list[str | None]
    start: int  # first row whose increment is evidence (K if none)
    setup_row: int | None  # row where the metric is set up in this block
    layout: Any  # the layout in force for the rows (None while waiting)


@dataclass
class Evaluation:
    """The evidence of one metric after each tick of a block."""

    log_e: FloatArray  # (K,) the metric's e-process (average of its tests)
    log_e_tests: FloatArray  # (K, T) each reported test (pooled, slices, or the check)
    enough: BoolArray  # (K,)
    progress: FloatArray  # (K,) min over tests of information / required, capped at 1
    commit: Callable[[int], None]


@dataclass
class Detail:
    """What a breach says about one reported test."""

    slice: str | None
    estimate: float | None
    interval: tuple[float | None, float | None]
    measure: str = ""  # what the estimate is, e.g. "rate ratio canary/baseline"


@dataclass
class MetricTests:
    """Tests created at setup; ``shares`` are the weights of the reported tests (sum 1)."""

    labels: list[str | None]
    shares: FloatArray
    extra: dict[str, Any] = field(default_factory=dict)


def empty_block(k: int, t: int) -> FloatArray:
    return np.zeros((k, t))


class MetricAnalysis(ABC):
    """Common machinery: setup, row extraction and checks, forward fill, canary totals."""

    def __init__(self, name: str, share: float, alpha: float, power: float) -> None:
        self.name = name
        self.share = share  # this metric's normalised weight in the combination
        self.alpha = alpha
        self.power = power
        self.layout: Any = None
        self.rules: RowRules | None = None
        self.last: FloatArray | None = None  # last good cumulative row
        self.tests: MetricTests | None = None
        self.canary_cols: list[int] = []
        self.reference: FloatArray | None = None  # the counts the tests were set up with
        self._rules_cache: dict[Any, tuple[RowRules, list[int]]] = {}

    # --- per kind ----------------------------------------------------------------------
    @abstractmethod
    def _layout_from(self, sample: MetricCounts) -> Any:
        """The layout fixed at setup, or None when the sample has no data yet."""

    @abstractmethod
    def _rules(self, layout: Any) -> tuple[RowRules, list[int]]:
        """Row rules and the columns holding the canary's totals."""

    @abstractmethod
    def _row(self, sample: MetricCounts, layout: Any) -> list[float]:
        """Cumulative counts in the layout's column order; raises StructuralError."""

    def _row_json(self, value: Any, layout: Any) -> list[float]:
        """Counts straight from the JSON value; raise anything to defer to ``_row``."""
        raise IrregularError

    @property
    def is_histogram(self) -> bool:
        return False

    def _canonical(self, value: Any) -> MetricCounts:
        try:
            return parse_metric(value, self.is_histogram, self.name)
        except FormatError as exc:
            raise StructuralError(str(exc)) from None

    def _sample_row(self, sample: Any, layout: Any) -> list[float]:
        if isinstance(sample, MetricCounts):
            return self._row(sample, layout)
        try:
            return self._row_json(sample, layout)
        except FAST_FAILURES:
            return self._row(self._canonical(sample), layout)

    @abstractmethod
    def _evaluate(self, increments: FloatArray, setup: MetricTests | None) -> Evaluation:
        """Evidence after each of the increments (K, F) (rows from the first evidence row)."""

    @abstractmethod
    def _create_tests(self, reference: FloatArray) -> MetricTests:
        """Build the tests at setup; ``reference`` is the cumulative row at setup."""

    @abstractmethod
    def detail(self, test: int) -> Detail:
        """Slice, estimate and interval of one reported test, from the committed state."""

    @property
    def evidence_after_setup(self) -> bool:
        """True when the setup tick itself is not evidence (its data chose the weights)."""
        return False

    @property
    def n_reported(self) -> int:
        return 0 if self.tests is None else len(self.tests.labels)

    # --- shared ------------------------------------------------------------------------
    def prepare(self, block: Sequence[Snapshot | JsonSnapshot]) -> Prepared:
        """Extract and check the rows of a block (no state changes).

        Until the metric is set up each tick is looked at on its own; after that the rows
        are read in one comprehension, and tick by tick again only if something is irregular.
        """
        k_total = len(block)
        layout = self.layout
        status: list[str] = []
        problems: list[str | None] = []
        raw: list[list[float] | None] = []
        setup_row: int | None = None
        k = 0
        while layout is None and k < k_total:
            sample = block[k].metrics.get(self.name)
            k += 1
            if sample is None:
                status.append(MISSING)
                problems.append(f"metric {self.name!r} is missing")
                raw.append(None)
                continue
            try:
                parsed = sample if isinstance(sample, MetricCounts) else self._canonical(sample)
                layout = self._layout_from(parsed)
                row = self._row(parsed, layout) if layout is not None else None
            except StructuralError as exc:
                layout = None
                status.append(INVALID)
                problems.append(f"metric {self.name!r}: {exc}")
                raw.append(None)
                continue
            if layout is None:
                status.append(WAITING)
                problems.append(None)
                raw.append(None)
                continue
            setup_row = k - 1
            status.append(OK)
            problems.append(None)
            raw.append(row)
        if layout is None:
            return Prepared(np.zeros((k_total, 0)), status, problems, k_total, None, None)
        rules, _ = self._rules_of(layout)
        self._read_rows(block, k, layout, raw, status, problems)

        first = 0 if setup_row is None else setup_row
        width = len(rules.columns)
        previous = np.zeros(width) if setup_row is not None or self.last is None else self.last
        rows = np.full((k_total, width), np.nan)
        for index in range(first, k_total):
            values = raw[index]
            if values is not None:
                rows[index] = values
        checked, found = check_rows(rows[first:], previous, rules)
        rows[first:] = checked
        rows[:first] = previous
        for offset, problem in enumerate(found):
            if problem:  # "" marks a structural problem already described
                status[first + offset] = INVALID
                problems[first + offset] = f"metric {self.name!r}: {problem}"
        if setup_row is not None and status[setup_row] != OK:
            # the setup tick itself was invalid: wait for a clean one
            return self._prepare_without(block, setup_row, status, problems)
        start = first
        if setup_row is not None and self.evidence_after_setup:
            start = setup_row + 1
        return Prepared(rows, status, problems, start, setup_row, layout)

    def prepare_rows(
        self, rows: FloatArray, layout: Any, layout_at: Callable[[int], Any]
    ) -> Prepared | None:
        """``prepare`` for a block read by another reader (``canary.analysis.fast_replay``).

        ``rows`` (K, F) hold every tick's cumulative counts in the column order of
        ``layout``, the layout every tick with data would set up; ``layout_at(k)`` is the
        layout tick ``k`` itself gives (``_layout_from``: None while it has no data), asked
        only until the metric is set up, exactly as ``prepare`` asks. None when the block is
        not clean (a tick invalid, or a layout other than ``layout``): the caller then takes
        ``prepare``, whose messages name what is wrong.
        """
        k_total = rows.shape[0]
        status: list[str] = []
        setup_row: int | None = None
        if self.layout is None:
            for k in range(k_total):
                found = layout_at(k)
                if found is None:
                    status.append(WAITING)
                    continue
                if found != layout:
                    return None
                setup_row = k
                break
            if setup_row is None:
                empty = np.zeros((k_total, 0))
                return Prepared(empty, status, [None] * k_total, k_total, None, None)
        elif self.layout != layout:
            return None
        status += [OK] * (k_total - len(status))
        rules, _ = self._rules_of(layout)
        first = 0 if setup_row is None else setup_row
        previous = self.last
        if setup_row is not None or previous is None:
            previous = np.zeros(len(rules.columns))
        _, found_problems = check_rows(rows[first:], previous, rules)
        if found_problems.count(None) != k_total - first:
            return None
        if first:
            rows = rows.copy()
            rows[:first] = previous
        start = first
        if setup_row is not None and self.evidence_after_setup:
            start = setup_row + 1
        return Prepared(rows, status, [None] * k_total, start, setup_row, layout)

    def _read_rows(
        self,
        block: Sequence[Snapshot | JsonSnapshot],
        begin: int,
        layout: Any,
        raw: list[list[float] | None],
        status: list[str],
        problems: list[str | None],
    ) -> None:
        """Rows of ``block[begin:]`` appended to ``raw`` (None for a tick with a problem)."""
        name = self.name
        row_json = self._row_json
        try:
            rest = [
                self._row(sample, layout)
                if isinstance(sample := snap.metrics[name], MetricCounts)
                else row_json(sample, layout)
                for snap in block[begin:]
            ]
        except (StructuralError, *FAST_FAILURES):
            pass
        else:
            raw += rest
            status += [OK] * len(rest)
            problems += [None] * len(rest)
            return
        for snap in block[begin:]:
            sample = snap.metrics.get(name)
            if sample is None:
                status.append(MISSING)
                problems.append(f"metric {name!r} is missing")
                raw.append(None)
                continue
            try:
                raw.append(self._sample_row(sample, layout))
                status.append(OK)
                problems.append(None)
            except StructuralError as exc:
                status.append(INVALID)
                problems.append(f"metric {name!r}: {exc}")
                raw.append(None)

    def _prepare_without(
        self,
        block: Sequence[Snapshot | JsonSnapshot],
        bad: int,
        status: list[str],
        problems: list[str | None],
    ) -> Prepared:
        rest = self.prepare(block[bad + 1 :])
        k_total = len(block)
        width = rest.rows.shape[1]
        rows = np.zeros((k_total, width))
        rows[bad + 1 :] = rest.rows
        return Prepared(
            rows=rows,
            status=status[: bad + 1] + rest.status,
            problems=problems[: bad + 1] + rest.problems,
            start=rest.start + bad + 1,
            setup_row=None if rest.setup_row is None else rest.setup_row + bad + 1,
            layout=rest.layout,
        )

    def evaluate(self, prepared: Prepared) -> Evaluation:
        """Evidence after each tick of the block (no state changes until commit).

        Ticks before the metric's evidence starts have e-value 1 (log 0) and no progress.
        """
        k_total = len(prepared.status)
        log_e = np.zeros(k_total)
        enough = np.zeros(k_total, dtype=bool)
        progress = np.zeros(k_total)
        if prepared.layout is None:
            return Evaluation(log_e, empty_block(k_total, 0), enough, progress, lambda row: None)
        start = prepared.start
        new_tests: MetricTests | None = None
        if prepared.setup_row is not None:
            self._pending_layout = prepared.layout
            reference = (
                prepared.rows[prepared.setup_row]
                if self.evidence_after_setup
                else np.zeros(prepared.rows.shape[1])
            )
            new_tests = self._create_tests(reference)
            previous = reference
            tests = new_tests
        else:
            assert self.last is not None
            assert self.tests is not None
            previous = self.last
            tests = self.tests
        log_e_tests = empty_block(k_total, len(tests.labels))
        body = prepared.rows[start:]
        inner: Evaluation | None = None
        if body.shape[0]:
            increments = np.diff(np.concatenate([previous[None], body]), axis=0)
            inner = self._evaluate(increments, new_tests)
            log_e[start:] = inner.log_e
            log_e_tests[start:] = inner.log_e_tests
            enough[start:] = inner.enough
            progress[start:] = inner.progress
        rows = prepared.rows

        def commit(row: int) -> None:
            setup_row = prepared.setup_row
            if setup_row is not None and row < setup_row:
                return
            if setup_row is not None:
                self.layout = prepared.layout
                self.rules, self.canary_cols = self._rules_of(prepared.layout)
                self.tests = new_tests
                self.reference = reference.copy()
            self.last = rows[row].copy()
            if inner is not None and row >= start:
                inner.commit(row - start)

        return Evaluation(log_e, log_e_tests, enough, progress, commit)

    # --- state ------------------------------------------------------------------------
    def _test_states(self) -> list[Any]:
        """JSON-serialisable states of the tests (override per kind)."""
        assert self.tests is not None
        return [self.tests.extra["runner"].state()]

    def _restore_tests(self, states: list[Any]) -> None:
        assert self.tests is not None
        self.tests.extra["runner"].restore(states[0])

    def state(self) -> dict[str, Any] | None:
        """Everything the evidence depends on, as JSON values (None before setup)."""
        if self.layout is None or self.last is None or self.reference is None:
            return None
        return {
            "layout": _to_json(self.layout),
            "reference": self.reference.tolist(),
            "last": self.last.tolist(),
            "tests": self._test_states(),
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        """Back to the state ``state()`` returned (the tests are rebuilt, then refilled)."""
        if state is None:
            return
        layout = _from_json(state["layout"])
        self._pending_layout = layout
        reference = np.asarray(state["reference"], dtype=np.float64)
        self.tests = self._create_tests(reference)
        self.layout = layout
        self.rules, self.canary_cols = self._rules_of(layout)
        self.reference = reference
        self.last = np.asarray(state["last"], dtype=np.float64)
        self._restore_tests(state["tests"])

    def _rules_of(self, layout: Any) -> tuple[RowRules, list[int]]:
        """``_rules`` memoised: a metric meets one layout (two while one is set up)."""
        cached = self._rules_cache.get(layout)
        if cached is None:
            cached = self._rules(layout)
            self._rules_cache[layout] = cached
        return cached

    def canary_columns(self, layout: Any) -> list[int]:
        """Columns of the canary's totals in rows of this layout."""
        return [] if layout is None else self._rules_of(layout)[1]


def arm_counts(arm: RatioArm | HistogramArm, what: str) -> RatioArm:
    if not isinstance(arm, RatioArm):
        raise StructuralError(f"{what} has histogram buckets where counts were expected")
    return arm


def slice_names(sample: MetricCounts, sliced: bool, what: str) -> list[str] | None:
    """Slices present in either arm; raises if the shape contradicts ``sliced``."""
    names: set[str] = set()
    for arm in (sample.baseline, sample.canary):
        if isinstance(arm, RatioArm):
            has_slices = arm.slices is not None
            has_counts = arm.counts is not None
        else:
            has_slices = arm.slices is not None
            has_counts = arm.buckets is not None
        if sliced and has_counts:
            raise StructuralError(f"{what} is sliced in the policy but has unsliced counts")
        if not sliced and has_slices:
            raise StructuralError(f"{what} has slices but the policy does not slice it")
        if arm.slices is not None:
            names.update(arm.slices)
    return sorted(names) if sliced else None


def has_counts(arm: RatioArm) -> bool:
    if arm.counts is not None:
        return arm.counts.total > 0
    return any(c.total > 0 for c in (arm.slices or {}).values())


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_from_json(item) for item in value)
    return value
