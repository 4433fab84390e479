"""The offline gate: a version's logged evaluation metrics against the policy's bounds.

This is the evaluation step of an ML CI/CD pipeline, run before a version gets any live
traffic: a candidate whose offline accuracy is already worse than the champion's, or whose
fairness difference is over the limit, is rejected here instead of being shown to users.

Pure on purpose: the registry reads the numbers, this module only compares them, so every
rule can be tested without a server and every outcome carries a reason a person can read.

Rules per metric (all optional, at least one set by the policy):
  min / max                 absolute bounds on the candidate's value;
  max_drop_vs_champion      candidate >= champion - drop   (for higher-is-better metrics);
  max_rise_vs_champion      candidate <= champion + rise   (for lower-is-better metrics).
A metric the candidate did not log fails the gate; so does a champion comparison when the
champion did not log the metric: a gate that passes because a number is missing is no gate.
Bounds are inclusive, with a tolerance of ``EPSILON`` so that 0.90 - 0.01 vs 0.89 passes
despite binary floating point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from canary.core.policy import GateRule

EPSILON = 1e-9

RuleName = Literal["logged", "min", "max", "max_drop_vs_champion", "max_rise_vs_champion"]


@dataclass(frozen=True)
class GateCheck:
    """The outcome of one rule on one metric."""

    metric: str
    rule: RuleName
    passed: bool
    reason: str
    value: float | None = None
    champion_value: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class GateResult:
    """Every rule's outcome; the gate passes when every check passes."""

    checks: tuple[GateCheck, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        return tuple(check for check in self.checks if not check.passed)

    @property
    def reason(self) -> str:
        """One readable line: every failure, or what passed."""
        if not self.checks:
            return "offline gate passed: no rules configured"
        if self.passed:
            metrics = sorted({check.metric for check in self.checks})
            return f"offline gate passed: {len(self.checks)} checks on " + ", ".join(metrics)
        return "offline gate failed: " + "; ".join(check.reason for check in self.failures)


def evaluate_gate(
    rules: Mapping[str, GateRule],
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
) -> GateResult:
    """Compare a candidate's metrics (and the champion's, if any) with ``rules``.

    ``champion`` is None when there is no champion to compare with; rules against the
    champion then fail with that reason.
    """
    checks: list[GateCheck] = []
    for metric in sorted(rules):
        checks.extend(_check_metric(metric, rules[metric], candidate, champion))
    return GateResult(tuple(checks))


def _check_metric(
    metric: str,
    rule: GateRule,
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
) -> list[GateCheck]:
    value = candidate.get(metric)
    if value is None:
        return [GateCheck(metric, "logged", False, f"{metric} was not logged by the candidate")]
    if math.isnan(value):
        return [GateCheck(metric, "logged", False, f"{metric} is NaN on the candidate", value)]
    checks: list[GateCheck] = []
    if rule.min is not None:
        ok = value >= rule.min - EPSILON
        relation = ">=" if ok else "<"
        checks.append(
            GateCheck(
                metric,
                "min",
                ok,
                f"{metric} {_fmt(value)} {relation} min {_fmt(rule.min)}",
                value,
                limit=rule.min,
            )
        )
    if rule.max is not None:
        ok = value <= rule.max + EPSILON
        relation = "<=" if ok else ">"
        checks.append(
            GateCheck(
                metric,
                "max",
                ok,
                f"{metric} {_fmt(value)} {relation} max {_fmt(rule.max)}",
                value,
                limit=rule.max,
            )
        )
    if rule.max_drop_vs_champion is not None:
        checks.append(_versus_champion(metric, value, champion, rule.max_drop_vs_champion, "drop"))
    if rule.max_rise_vs_champion is not None:
        checks.append(_versus_champion(metric, value, champion, rule.max_rise_vs_champion, "rise"))
    return checks


def _versus_champion(
    metric: str,
    value: float,
    champion: Mapping[str, float] | None,
    allowed: float,
    direction: Literal["drop", "rise"],
) -> GateCheck:
    rule: RuleName = "max_drop_vs_champion" if direction == "drop" else "max_rise_vs_champion"
    if champion is None:
        return GateCheck(
            metric, rule, False, f"{metric}: no champion to compare with", value, limit=allowed
        )
    base = champion.get(metric)
    if base is None or math.isnan(base):
        missing = "was not logged by" if base is None else "is NaN on"
        return GateCheck(
            metric,
            rule,
            False,
            f"{metric} {missing} the champion, cannot check the {direction}",
            value,
            base,
            allowed,
        )
    change = (base - value) if direction == "drop" else (value - base)
    ok = change <= allowed + EPSILON
    if ok:
        reason = (
            f"{metric} {_fmt(value)} vs champion {_fmt(base)}: {direction} within {_fmt(allowed)}"
        )
    else:
        verb = "dropped" if direction == "drop" else "rose"
        reason = (
            f"{metric} {verb} {_fmt(change)} vs champion ({_fmt(base)} -> {_fmt(value)}), "
            f"more than the {_fmt(allowed)} allowed"
        )
    return GateCheck(metric, rule, ok, reason, value, base, allowed)


def _fmt(number: float) -> str:
    return f"{number:.6g}"
