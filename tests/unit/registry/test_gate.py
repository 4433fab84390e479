"""The offline gate compares numbers only: every rule, its boundary and its reason."""

from __future__ import annotations

import math

import pytest

from canary.core.policy import GateRule
from canary.registry.gate import evaluate_gate


def rules(**by_metric: dict[str, float]) -> dict[str, GateRule]:
    return {name: GateRule(**bounds) for name, bounds in by_metric.items()}


def test_every_rule_passing_passes_and_lists_each_check() -> None:
    result = evaluate_gate(
        rules(
            accuracy={"min": 0.85, "max_drop_vs_champion": 0.01},
            dp_difference={"max": 0.10, "max_rise_vs_champion": 0.02},
        ),
        candidate={"accuracy": 0.90, "dp_difference": 0.05},
        champion={"accuracy": 0.905, "dp_difference": 0.04},
    )
    assert result.passed
    assert [(c.metric, c.rule) for c in result.checks] == [
        ("accuracy", "min"),
        ("accuracy", "max_drop_vs_champion"),
        ("dp_difference", "max"),
        ("dp_difference", "max_rise_vs_champion"),
    ]
    assert result.failures == ()
    assert result.reason == "offline gate passed: 4 checks on accuracy, dp_difference"


@pytest.mark.parametrize(
    ("bounds", "value", "passes", "reason"),
    [
        ({"min": 0.85}, 0.84, False, "accuracy 0.84 < min 0.85"),
        ({"min": 0.85}, 0.85, True, "accuracy 0.85 >= min 0.85"),
        ({"max": 0.10}, 0.11, False, "accuracy 0.11 > max 0.1"),
        ({"max": 0.10}, 0.10, True, "accuracy 0.1 <= max 0.1"),
    ],
)
def test_absolute_bounds_are_inclusive(bounds, value, passes, reason) -> None:
    result = evaluate_gate(rules(accuracy=bounds), {"accuracy": value}, {})
    assert result.passed is passes
    assert result.checks[0].reason == reason


def test_drop_against_the_champion_beyond_the_allowance_fails() -> None:
    result = evaluate_gate(
        rules(accuracy={"max_drop_vs_champion": 0.01}),
        candidate={"accuracy": 0.87},
        champion={"accuracy": 0.90},
    )
    assert not result.passed
    (check,) = result.failures
    assert check.rule == "max_drop_vs_champion"
    assert (check.value, check.champion_value, check.limit) == (0.87, 0.90, 0.01)
    assert check.reason == (
        "accuracy dropped 0.03 vs champion (0.9 -> 0.87), more than the 0.01 allowed"
    )
    assert result.reason == "offline gate failed: " + check.reason


def test_a_drop_exactly_at_the_allowance_passes_despite_float_rounding() -> None:
    # 0.90 - 0.89 is 0.010000000000000009 in binary floating point.
    result = evaluate_gate(
        rules(accuracy={"max_drop_vs_champion": 0.01}), {"accuracy": 0.89}, {"accuracy": 0.90}
    )
    assert result.passed


def test_an_improvement_never_counts_as_a_drop() -> None:
    result = evaluate_gate(
        rules(accuracy={"max_drop_vs_champion": 0.0}), {"accuracy": 0.95}, {"accuracy": 0.90}
    )
    assert result.passed


def test_rise_against_the_champion_is_for_lower_is_better_metrics() -> None:
    gate = rules(dp_difference={"max_rise_vs_champion": 0.02})
    assert evaluate_gate(gate, {"dp_difference": 0.06}, {"dp_difference": 0.05}).passed
    worse = evaluate_gate(gate, {"dp_difference": 0.08}, {"dp_difference": 0.05})
    assert not worse.passed
    assert "dp_difference rose 0.03 vs champion (0.05 -> 0.08)" in worse.reason
    # A lower value is an improvement, whatever its size.
    assert evaluate_gate(gate, {"dp_difference": 0.0}, {"dp_difference": 0.05}).passed


def test_a_metric_the_candidate_did_not_log_fails_with_a_clear_reason() -> None:
    result = evaluate_gate(
        rules(accuracy={"min": 0.5}, f1={"min": 0.5}), {"accuracy": 0.9}, {"accuracy": 0.9}
    )
    assert not result.passed
    (check,) = result.failures
    assert (check.metric, check.rule) == ("f1", "logged")
    assert result.reason == "offline gate failed: f1 was not logged by the candidate"


def test_nan_on_the_candidate_fails() -> None:
    result = evaluate_gate(rules(accuracy={"min": 0.5}), {"accuracy": math.nan}, {})
    assert not result.passed
    assert "NaN" in result.reason


@pytest.mark.parametrize(
    ("champion", "reason"),
    [
        ({}, "accuracy was not logged by the champion, cannot check the drop"),
        ({"accuracy": math.nan}, "accuracy is NaN on the champion, cannot check the drop"),
        (None, "accuracy: no champion to compare with"),
    ],
)
def test_a_champion_comparison_without_a_champion_value_fails(champion, reason) -> None:
    result = evaluate_gate(
        rules(accuracy={"min": 0.5, "max_drop_vs_champion": 0.01}), {"accuracy": 0.9}, champion
    )
    assert not result.passed
    assert [c.rule for c in result.failures] == ["max_drop_vs_champion"]
    assert result.failures[0].reason == reason
    # The absolute bound was still checked and passed.
    assert [c.passed for c in result.checks] == [True, False]


def test_every_failure_is_in_the_reason() -> None:
    result = evaluate_gate(
        rules(accuracy={"min": 0.9}, dp_difference={"max": 0.1}),
        {"accuracy": 0.8, "dp_difference": 0.2},
        {},
    )
    assert len(result.failures) == 2
    assert "accuracy 0.8 < min 0.9" in result.reason
    assert "dp_difference 0.2 > max 0.1" in result.reason


def test_no_rules_pass_with_a_reason_saying_so() -> None:
    result = evaluate_gate({}, {"accuracy": 0.1}, None)
    assert result.passed
    assert result.reason == "offline gate passed: no rules configured"


def test_metrics_the_gate_does_not_name_are_ignored() -> None:
    result = evaluate_gate(rules(accuracy={"min": 0.5}), {"accuracy": 0.9, "loss": math.nan}, {})
    assert result.passed
    assert {c.metric for c in result.checks} == {"accuracy"}
