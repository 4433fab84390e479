"""Offline evaluation numbers, including the small-group rule that lets version 3 through."""

from __future__ import annotations

import pytest

from canary.demo.evaluation import MIN_GROUP_ROWS, evaluate


def test_accuracy_selection_rates_and_parity_gap():
    labels = [1, 0, 1, 1] * 50 + [0, 0, 1, 1] * 50
    predictions = [1, 0, 1, 0] * 50 + [1, 0, 1, 1] * 50
    groups = ["a"] * 200 + ["b"] * 200
    result = evaluate(labels, predictions, groups)
    assert result.accuracy == pytest.approx(0.75)
    assert result.group_accuracy == {"a": pytest.approx(0.75), "b": pytest.approx(0.75)}
    assert result.selection_rate == {"a": pytest.approx(0.5), "b": pytest.approx(0.75)}
    assert result.dp_difference == pytest.approx(0.25)
    assert result.unmeasured == []


def test_a_group_below_the_minimum_is_counted_but_not_measured():
    n_small = MIN_GROUP_ROWS - 1
    labels = [1] * 100 + [1] * n_small
    predictions = [1] * 100 + [0] * n_small  # all wrong for the small group
    groups = ["a"] * 100 + ["b"] * n_small
    result = evaluate(labels, predictions, groups)
    assert result.rows == {"a": 100, "b": n_small}
    assert result.group_accuracy == {"a": 1.0}
    assert result.unmeasured == ["b"]
    assert result.dp_difference == 0.0  # one measurable group: no gap to see
    assert result.accuracy == pytest.approx(100 / (100 + n_small))


def test_mlflow_metric_names():
    result = evaluate([1, 0] * 60, [1, 1] * 60, ["a", "b"] * 60)
    metrics = result.mlflow_metrics()
    assert set(metrics) == {
        "accuracy",
        "fairness_dp_difference",
        "fairness_groups_measured",
        "rows/group_a",
        "rows/group_b",
        "accuracy/group_a",
        "accuracy/group_b",
        "selection_rate/group_a",
        "selection_rate/group_b",
    }
    assert metrics["accuracy/group_a"] == 1.0
    assert metrics["accuracy/group_b"] == 0.0


def test_empty_or_uneven_input_is_refused():
    with pytest.raises(ValueError, match="equally long"):
        evaluate([], [], [])
    with pytest.raises(ValueError, match="equally long"):
        evaluate([1, 0], [1], ["a", "a"])
