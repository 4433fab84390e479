"""The rollouts the detection benchmark runs: four with nothing wrong, four with a regression.

Every scenario shares one production-like baseline (1% errors, a p99 near 0.2 s, three
groups with accuracies 0.87-0.92 and equal approval rates) and watches all four checks of
the policy at once, so a method must keep quiet on the checks that are fine while it finds
the one that is not. The regressions are clear ones (an oracle that knows them finds each
within minutes) at the share the targets name: one hour at 100 requests/s and 5%.

The peers need thresholds that canary does not: Flagger and Argo Rollouts compare each
interval's value with a fixed bound. We give them bounds from the baseline's TRUE rates (a
user only has estimates, so this favours them): 1.5 times the baseline's rate of bad
outcomes (errors, requests slower than its p99 -> p99 bound 1.5 x the true p99, wrong
predictions per group) and the policy's own four-fifths ratio for parity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from benchmarks.sim.flagger import Threshold
from benchmarks.sim.simulate import ArmParams, Bursts, MetricNames, SimConfig
from canary.core.policy import Policy, load_policy

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"

NAMES = MetricNames()

BASELINE = ArmParams(
    error_rate=0.01,
    tail_fraction=0.005,
    accuracy={"a": 0.90, "b": 0.87, "c": 0.92},
    selection={"a": 0.30, "b": 0.30, "c": 0.30},
)
BETTER = ArmParams(
    error_rate=0.005,
    tail_fraction=0.002,
    accuracy={"a": 0.92, "b": 0.89, "c": 0.94},
    selection={"a": 0.30, "b": 0.30, "c": 0.30},
)


@dataclass(frozen=True)
class Scenario:
    """A named rollout recipe: the simulation, the policy canary runs, and the truth.

    ``expected`` is the (metric, slice) that truly regressed, or None when nothing did (any
    rollback is then a false rollback). ``rollouts_of`` names another scenario whose
    rollouts (same seeds, same draws) this one judges under a different policy.
    """

    name: str
    title: str
    policy_file: str
    config: SimConfig
    expected: tuple[str, str | None] | None = None
    rollouts_of: str | None = None

    @property
    def seed_name(self) -> str:
        """The name the rollouts' seeds derive from."""
        return self.rollouts_of or self.name

    @property
    def is_null(self) -> bool:
        return self.expected is None

    def policy(self) -> Policy:
        return _policy(self.policy_file)

    def policy_path(self) -> Path:
        return POLICY_DIR / self.policy_file


@cache
def _policy(file: str) -> Policy:
    return load_policy(POLICY_DIR / file)


def schedule_of(policy: Policy, duration: float) -> tuple[tuple[float, float], ...]:
    """The policy's steps as (start second, weight): each step lasts its min_duration.

    A step without min_duration lasts to the end of the rollout, as does the last step.
    """
    out: list[tuple[float, float]] = []
    start = 0.0
    for step in policy.steps:
        if start >= duration:
            break
        out.append((start, step.weight))
        if step.min_duration is None:
            break
        start += step.min_duration
    return tuple(out)


def _config(policy_file: str, canary: ArmParams, **kwargs: object) -> SimConfig:
    base = SimConfig(baseline=BASELINE, canary=canary, names=NAMES)
    config = replace(base, **kwargs)  # type: ignore[arg-type]
    return replace(config, schedule=schedule_of(_policy(policy_file), config.duration))


def _with(arm: ArmParams, **changes: object) -> ArmParams:
    return replace(arm, **changes)  # type: ignore[arg-type]


CONSTANT = "constant-5pct.yaml"
RAMP = "ramp.yaml"
ERRORS_ONLY = "errors-only-5pct.yaml"
ERRORS_STRICT = "errors-strict-5pct.yaml"


def all_scenarios() -> list[Scenario]:
    """Every scenario, null ones first."""
    return [
        Scenario(
            "aa_constant",
            "A/A, constant 5% split",
            CONSTANT,
            _config(CONSTANT, BASELINE),
        ),
        Scenario(
            "aa_ramp",
            "A/A, ramp 1→5→25→50%",
            RAMP,
            _config(RAMP, BASELINE),
        ),
        Scenario(
            "aa_bursts",
            "A/A, 5%, error bursts on both arms, load ±50%",
            CONSTANT,
            _config(CONSTANT, BASELINE, bursts=Bursts(), load_amplitude=0.5),
        ),
        Scenario(
            "better",
            "canary better on every metric",
            CONSTANT,
            _config(CONSTANT, BETTER),
        ),
        Scenario(
            "errors_2x",
            "error rate 1% → 2%",
            CONSTANT,
            _config(CONSTANT, _with(BASELINE, error_rate=0.02)),
            expected=(NAMES.errors, None),
        ),
        Scenario(
            "errors_2x_single",
            "error rate 1% → 2%, errors-only policy (same rollouts)",
            ERRORS_ONLY,
            _config(ERRORS_ONLY, _with(BASELINE, error_rate=0.02)),
            expected=(NAMES.errors, None),
            rollouts_of="errors_2x",
        ),
        Scenario(
            "errors_2x_strict",
            "error rate 1% → 2%, errors-only policy, no tolerance (same rollouts)",
            ERRORS_STRICT,
            _config(ERRORS_STRICT, _with(BASELINE, error_rate=0.02)),
            expected=(NAMES.errors, None),
            rollouts_of="errors_2x",
        ),
        Scenario(
            "latency_p99",
            "p99 latency ×1.8, median same, mean +5%",
            CONSTANT,
            _config(CONSTANT, _with(BASELINE, tail_fraction=0.02)),
            expected=(NAMES.latency, None),
        ),
        Scenario(
            "accuracy_group",
            "accuracy of group b 0.87 → 0.80 (others same)",
            CONSTANT,
            _config(CONSTANT, _with(BASELINE, accuracy={**BASELINE.accuracy, "b": 0.80})),
            expected=(NAMES.accuracy, "b"),
        ),
        Scenario(
            "selection_group",
            "approval rate of group c 0.30 → 0.20 (ratio 0.67 < 0.8)",
            CONSTANT,
            _config(CONSTANT, _with(BASELINE, selection={**BASELINE.selection, "c": 0.20})),
            expected=(NAMES.fairness, "c"),
        ),
    ]


def scenario(name: str) -> Scenario:
    for s in all_scenarios():
        if s.name == name:
            return s
    raise KeyError(name)


def threshold_bounds(
    config: SimConfig, factor: float = 1.5, min_ratio: float = 0.8, quantile: float = 0.99
) -> Mapping[tuple[str, str | None], Threshold]:
    """Per-interval bounds for the threshold methods, from the baseline's true rates."""
    base = config.baseline
    names = config.names
    bounds: dict[tuple[str, str | None], Threshold] = {
        (names.errors, None): Threshold(max=factor * base.error_rate),
        (names.latency, None): Threshold(
            max=factor * config.latency.quantile(quantile, base.tail_fraction)
        ),
        (names.fairness, None): Threshold(min=min_ratio),
    }
    for group, accuracy in base.accuracy.items():
        bounds[(names.accuracy, group)] = Threshold(min=1.0 - factor * (1.0 - accuracy))
    return bounds
