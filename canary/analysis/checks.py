"""Checking a block of cumulative count rows before any of it becomes evidence.

Why here and not in the statistics. Counts that go backwards (a counter reset the source did
not handle), negative counts, more errors than requests, or a metric that vanished are facts
about the data pipeline, not about the canary. They must never turn into evidence (a phantom
burst of errors) nor be silently skipped in a replay. The analyzer marks such a tick "invalid"
for that metric, carries the last good counts forward (so the next good tick sees everything
since) and the replay reader turns the same finding into an error naming the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class RowRules:
    """What a valid row of cumulative counts looks like.

    ``columns`` names each column for messages; ``at_most`` pairs (i, j) require
    row[i] <= row[j] (events <= total, a lower bucket <= a higher one).
    """

    columns: tuple[str, ...]
    small: IntArray
    big: IntArray

    @classmethod
    def build(cls, columns: Sequence[str], at_most: Sequence[tuple[int, int]]) -> RowRules:
        pairs = np.array(at_most, dtype=np.intp).reshape(-1, 2)
        return cls(columns=tuple(columns), small=pairs[:, 0], big=pairs[:, 1])


def _fmt(value: float) -> str:
    return f"{value:g}"


def row_problem(row: FloatArray, previous: FloatArray, rules: RowRules) -> str | None:
    """The first problem of one row against the last good one, or None."""
    for index in range(row.size):
        value = float(row[index])
        if not np.isfinite(value):
            return f"{rules.columns[index]} is not a finite number"
        if value < 0:
            return f"{rules.columns[index]} is negative ({_fmt(value)})"
    for i, j in zip(rules.small.tolist(), rules.big.tolist(), strict=True):
        if row[i] > row[j]:
            return (
                f"{rules.columns[i]} ({_fmt(float(row[i]))}) exceeds "
                f"{rules.columns[j]} ({_fmt(float(row[j]))})"
            )
    back = np.nonzero(row < previous)[0]
    if back.size:
        index = int(back[0])
        return (
            f"{rules.columns[index]} went backwards "
            f"({_fmt(float(previous[index]))} -> {_fmt(float(row[index]))})"
        )
    return None


def check_rows(
    rows: FloatArray, previous: FloatArray, rules: RowRules
) -> tuple[FloatArray, list[str | None]]:
    """Validate a block of rows (K, F) against the last good row before it.

    Returns the rows with every invalid row replaced by the last good one (so its increment
    is zero) and the problem of each row (None when valid). Rows that are all NaN stand for a
    structural problem already reported by the caller; they are carried forward too.
    """
    # fast path: the normal case of a clean block, checked with a few array operations
    if rows.size and bool(np.all((rows >= 0) & (rows < np.inf))):
        ordered = bool(np.all(rows[:, rules.small] <= rows[:, rules.big]))
        steps = np.diff(np.concatenate([previous[None], rows]), axis=0)
        if ordered and bool(np.all(steps >= 0)):
            return rows, [None] * rows.shape[0]
    out = rows.copy()
    problems: list[str | None] = []
    last = previous
    for k in range(rows.shape[0]):
        row = rows[k]
        if np.all(np.isnan(row)):
            problems.append("")  # structural problem, named by the caller
            out[k] = last
            continue
        problem = row_problem(row, last, rules)
        problems.append(problem)
        if problem is None:
            last = row
        else:
            out[k] = last
    return out, problems
