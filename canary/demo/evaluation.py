"""Offline evaluation of a version on its validation split: the numbers the gate reads.

Pure, so the same code scores a validation split before registration and the live set in
the tests. Per-group numbers are only reported for groups with at least ``MIN_GROUP_ROWS``
validation rows, as evaluation pipelines commonly do: a rate from a dozen rows is noise.
That rule is also how a data set that lost a group slips through an offline fairness gate:
with one measurable group, the demographic-parity difference is zero. Live traffic, where
the group is present again, is what shows the harm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_GROUP_ROWS = 50


@dataclass(frozen=True)
class Evaluation:
    """Accuracy overall and per group, selection (approval) rates and their parity gap."""

    accuracy: float
    rows: dict[str, int]  # rows per group, measured or not
    group_accuracy: dict[str, float]  # groups with at least MIN_GROUP_ROWS rows
    selection_rate: dict[str, float]  # same groups: share predicted 1 (approved)
    dp_difference: float  # max - min selection rate over those groups (0 with fewer than 2)

    @property
    def unmeasured(self) -> list[str]:
        """Groups present in the data with too few rows to be measured."""
        return [g for g in self.rows if g not in self.group_accuracy]

    def mlflow_metrics(self) -> dict[str, float]:
        """Metric names and values as logged on the version's MLflow run."""
        metrics = {
            "accuracy": self.accuracy,
            "fairness_dp_difference": self.dp_difference,
            "fairness_groups_measured": float(len(self.group_accuracy)),
        }
        for group, rows in self.rows.items():
            metrics[f"rows/group_{group}"] = float(rows)
        for group, value in self.group_accuracy.items():
            metrics[f"accuracy/group_{group}"] = value
            metrics[f"selection_rate/group_{group}"] = self.selection_rate[group]
        return metrics


def evaluate(
    labels: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    groups: Sequence[str] | np.ndarray,
) -> Evaluation:
    """Score ``predictions`` against ``labels``; per group as described in the module."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    g = np.asarray(groups, dtype=object)
    if not len(y) == len(p) == len(g) or len(y) == 0:
        raise ValueError("labels, predictions and groups must be non-empty and equally long")
    correct = y == p
    rows: dict[str, int] = {}
    group_accuracy: dict[str, float] = {}
    selection: dict[str, float] = {}
    for group in sorted(set(g.tolist())):
        mask = g == group
        count = int(mask.sum())
        rows[str(group)] = count
        if count >= MIN_GROUP_ROWS:
            group_accuracy[str(group)] = float(correct[mask].mean())
            selection[str(group)] = float(p[mask].mean())
    gap = max(selection.values()) - min(selection.values()) if len(selection) >= 2 else 0.0
    return Evaluation(float(correct.mean()), rows, group_accuracy, selection, float(gap))
