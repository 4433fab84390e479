"""What the peer methods need from a canary policy: each check, its direction and its share.

The peers are configured from the same policy canary runs, so they watch the same metrics,
in the same direction, with the same tolerance and the same alpha budget; only the decision
rule differs. That is what makes the comparison about the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from canary.core.policy import HistogramMetric, Policy

RuleKind = Literal["ratio", "histogram", "fairness"]


@dataclass(frozen=True)
class Rule:
    """One metric or fairness check of the policy, reduced to what a decision rule uses."""

    name: str
    kind: RuleKind
    worse_when: Literal["higher", "lower"]
    relative: float | None = None
    absolute: float | None = None
    share: float = 1.0
    sliced: bool = False
    min_ratio: float | None = None
    max_gap_increase: float | None = None


@dataclass(frozen=True)
class PolicyView:
    alpha: float
    interval: float
    rules: tuple[Rule, ...]

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


def view_of(policy: Policy) -> PolicyView:
    """The checks of ``policy`` with their share of alpha (weights normalised to sum to 1)."""
    analysis = policy.analysis
    total = sum(m.weight for m in analysis.metrics) + sum(f.weight for f in analysis.fairness)
    rules: list[Rule] = []
    for m in analysis.metrics:
        tol = m.tolerance
        rules.append(
            Rule(
                name=m.name,
                kind="histogram" if isinstance(m, HistogramMetric) else "ratio",
                worse_when=m.worse_when,
                relative=tol.relative if tol else None,
                absolute=tol.absolute if tol else None,
                share=m.weight / total,
                sliced=m.slice_by is not None,
            )
        )
    for f in analysis.fairness:
        rules.append(
            Rule(
                name=f.name,
                kind="fairness",
                worse_when="lower",
                share=f.weight / total,
                sliced=True,
                min_ratio=f.min_ratio,
                max_gap_increase=f.max_gap_increase,
            )
        )
    return PolicyView(alpha=analysis.alpha, interval=analysis.interval, rules=tuple(rules))
