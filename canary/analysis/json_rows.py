"""Counts read straight from the JSON form of a snapshot, for replays of many files.

Why. Building snapshot objects for every tick of thousands of recorded rollouts costs more
than the statistics. These readers take the decoded JSON of one metric and return its row of
counts, raising at anything irregular, in which case the caller takes the strict path
(``canary.analysis.jsonform.parse_metric``), so both paths always mean the same counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from canary.analysis.metric_base import (
    IrregularError,
    numbers_only,
)


def json_slice_rows(
    value: Any, groups: Sequence[str], arms: tuple[str, str], later: bool = False
) -> list[float]:
    """(events, total) of each group for the two arms in ``arms`` order, straight from JSON;
    with ``later``, each arm's part ends with the sums over the slices not in ``groups``.

    Irregular unless each arm holds exactly ``slices`` (and, without ``later``, only slices
    among ``groups``: the caller then takes the strict path).
    """
    if len(value) != 2:
        raise IrregularError
    row: list[float] = []
    append = row.append
    for arm_name in arms:
        arm = value[arm_name]
        slices = arm["slices"]
        if len(arm) != 1 or type(slices) is not dict:
            raise IrregularError
        present = 0
        for group in groups:
            counts = slices.get(group)
            if counts is None:
                append(0.0)
                append(0.0)
            else:
                if len(counts) != 2:  # a non-dict of length 2 fails on the keys below
                    raise IrregularError
                append(counts["events"])
                append(counts["total"])
                present += 1
        if present != len(slices):
            if not later:
                raise IrregularError
            known = set(groups)
            extra = [counts for name, counts in slices.items() if name not in known]
            if any(len(counts) != 2 for counts in extra):
                raise IrregularError
            values = [v for counts in extra for v in (counts["events"], counts["total"])]
            if not numbers_only(values):
                raise IrregularError
            append(sum(values[0::2]))
            append(sum(values[1::2]))
        elif later:
            append(0.0)
            append(0.0)
    if not numbers_only(row):
        raise IrregularError
    return row


def json_ratio_row(value: Any, groups: Sequence[str] | None) -> list[float]:
    """Counts of a ratio metric straight from JSON; raises on anything irregular."""
    if groups is not None:
        flat = json_slice_rows(value, groups, ("baseline", "canary"), later=True)
        n_parts = len(groups) + 1  # the later slices' sums come last in each arm
        row: list[float] = []
        for g in range(n_parts):  # column order: per group, baseline then canary
            row += flat[2 * g : 2 * g + 2]
            row += flat[2 * (n_parts + g) : 2 * (n_parts + g) + 2]
        return row
    base = value["baseline"]
    can = value["canary"]
    if len(value) != 2 or len(base) != 2 or len(can) != 2:
        raise IrregularError
    if type(base) is not dict or type(can) is not dict:
        raise IrregularError
    row = [base["events"], base["total"], can["events"], can["total"]]
    if not numbers_only(row):
        raise IrregularError
    return row
