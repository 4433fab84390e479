"""Small simulated rollouts in the replay format, and the policies the tests replay them with.

Counts are drawn per tick (binomial errors, multinomial latency buckets and groups), then
written cumulatively, exactly as ``canary record`` would write them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from canary.core.policy import Policy, parse_policy

BOUNDS = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
# baseline latency: probability of each bucket (last one: above 1 s); p99 is near 0.5 s
LATENCY = [0.30, 0.35, 0.25, 0.07, 0.02, 0.008, 0.002]
GROUPS = ["a", "b", "c"]

POLICY_HEAD = """
model: credit-risk
trigger: {alias: challenger}
serving: {address: "127.0.0.1:8080"}
router: {type: haproxy, runtime_api: "127.0.0.1:9999", backend: credit_risk}
steps: [{weight: 5}, {weight: 50}]
"""

FOUR_METRICS = (
    POLICY_HEAD
    + """
analysis:
  alpha: 0.05
  metrics:
    - name: errors
      kind: ratio
      events: requests_total{code=~"5.."}
      total: requests_total
      worse_when: higher
      tolerance: {relative: 0.1}
    - name: accuracy
      kind: ratio
      events: labelled_total{correct="true"}
      total: labelled_total
      worse_when: lower
      slice_by: group
      tolerance: {absolute: 0.02}
    - name: latency
      kind: histogram
      buckets: request_duration_seconds_bucket
  fairness:
    - name: approval_parity
      positives: predictions_total{predicted="1"}
      total: predictions_total
      slice_by: group
"""
)


def four_metric_policy() -> Policy:
    return parse_policy(FOUR_METRICS, "four.yaml")


def policy_with(analysis_yaml: str) -> Policy:
    return parse_policy(POLICY_HEAD + analysis_yaml, "policy.yaml")


@dataclass
class Arm:
    error_rate: float = 0.01
    latency: list[float] = field(default_factory=lambda: list(LATENCY))
    accuracy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(GROUPS, 0.9))
    selection: dict[str, float] = field(default_factory=lambda: dict.fromkeys(GROUPS, 0.3))


def rollout(
    rng: np.random.Generator,
    ticks: int = 120,
    per_tick: float = 1500.0,
    share: Callable[[int], float] = lambda k: 0.05,
    baseline: Arm | None = None,
    canary: Arm | None = None,
) -> list[str]:
    """Lines of one rollout with the four metrics of ``FOUR_METRICS``."""
    arms = {"baseline": baseline or Arm(), "canary": canary or Arm()}
    totals: dict[tuple[Any, ...], int] = {}
    latency_totals: dict[str, np.ndarray] = {}

    def add(key: tuple[Any, ...], value: int) -> int:
        totals[key] = totals.get(key, 0) + int(value)
        return totals[key]

    lines = []
    for k in range(ticks):
        n = int(rng.poisson(per_tick))
        n_canary = int(rng.binomial(n, share(k)))
        sizes = {"baseline": n - n_canary, "canary": n_canary}
        metrics: dict[str, dict[str, Any]] = {
            "errors": {},
            "accuracy": {},
            "latency": {},
            "approval_parity": {},
        }
        for name, arm in arms.items():
            size = sizes[name]
            errors = int(rng.binomial(size, arm.error_rate))
            metrics["errors"][name] = {
                "events": add((name, "err"), errors),
                "total": add((name, "req"), size),
            }
            per_bucket = latency_totals.setdefault(name, np.zeros(len(LATENCY), dtype=int))
            per_bucket += rng.multinomial(size, arm.latency)
            cumulative = np.cumsum(per_bucket)  # cumulative in le, as Prometheus writes it
            metrics["latency"][name] = {
                "buckets": [[b, int(c)] for b, c in zip(BOUNDS, cumulative[:-1], strict=True)]
                + [["+Inf", int(cumulative[-1])]]
            }
            groups = rng.multinomial(size, [1 / 3] * 3)
            acc: dict[str, dict[str, int]] = {}
            sel: dict[str, dict[str, int]] = {}
            for group, size_g in zip(GROUPS, groups, strict=True):
                labelled = int(rng.binomial(size_g, 0.5))
                correct = int(rng.binomial(labelled, arm.accuracy[group]))
                acc[group] = {
                    "events": add((name, "ok", group), correct),
                    "total": add((name, "lab", group), labelled),
                }
                positives = int(rng.binomial(size_g, arm.selection[group]))
                sel[group] = {
                    "events": add((name, "pos", group), positives),
                    "total": add((name, "pred", group), int(size_g)),
                }
            metrics["accuracy"][name] = {"slices": acc}
            metrics["approval_parity"][name] = {"slices": sel}
        lines.append(
            json.dumps({"t": 15.0 * (k + 1), "canary_weight": 100 * share(k), "metrics": metrics})
        )
    return lines
