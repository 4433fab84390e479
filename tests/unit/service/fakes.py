"""Fakes of our own small interfaces (registry, router, serving, metric source) for the
controller's unit tests. The store is the real SQLite store; the analysis is the real one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from canary.analysis.snapshot import Counts, MetricCounts, RatioArm, Snapshot
from canary.core.policy import Policy
from canary.errors import MetricsError, RegistryError, RouterError
from canary.metrics.prometheus import Arms, Measurement
from canary.registry.base import (
    TAG_STATUS,
    Dataset,
    ModelVersion,
    Outcome,
    VersionDetails,
    VersionStatus,
)
from canary.serving.base import Backend
from canary.traffic.base import Address, Weights


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeRegistry:
    champion_version: str = "1"
    versions: dict[str, dict[str, float]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    records: list[tuple[str, Outcome]] = field(default_factory=list)
    down: bool = False

    def __post_init__(self) -> None:
        self.aliases.setdefault("champion", self.champion_version)

    def _v(self, model: str, version: str) -> ModelVersion:
        aliases = tuple(a for a, v in self.aliases.items() if v == version)
        return ModelVersion(
            model,
            version,
            f"runs:/r{version}/model",
            f"r{version}",
            int(version),
            dict(self.tags.get(version, {})),
            aliases,
        )

    def _check(self) -> None:
        if self.down:
            raise RegistryError("MLflow unreachable")

    def champion(self, policy: Policy) -> ModelVersion | None:
        self._check()
        v = self.aliases.get(policy.champion_alias)
        return self._v(policy.model, v) if v else None

    def candidates(self, policy: Policy) -> list[ModelVersion]:
        self._check()
        champion = self.aliases.get(policy.champion_alias)
        out = []
        for v in sorted(self.versions, key=int, reverse=True):
            status = self.tags.get(v, {}).get(TAG_STATUS)
            if v == champion or (status and status != "in_progress"):
                continue
            if int(v) > int(champion or 0):
                out.append(self._v(policy.model, v))
        return out

    def details(self, model: str, version: str) -> VersionDetails:
        self._check()
        return VersionDetails(
            self._v(model, version),
            dict(self.versions.get(version, {})),
            (Dataset("credit-train", "abc123", "s3://data/credit", "s3", "training"),),
            f"run-{version}",
        )

    def record(self, policy: Policy, version: str, outcome: Outcome) -> tuple[str, ...]:
        self._check()
        self.records.append((version, outcome))
        tags = self.tags.setdefault(version, {})
        changes: list[str] = []
        if tags.get(TAG_STATUS) != outcome.status.value:
            tags[TAG_STATUS] = outcome.status.value
            changes.append("status")
        if (
            outcome.status is VersionStatus.PROMOTED
            and self.aliases.get(policy.champion_alias) != version
        ):
            tags["canary.previous_champion"] = self.aliases.get(policy.champion_alias, "")
            self.aliases[policy.champion_alias] = version
            changes.append("alias")
        return tuple(changes)


@dataclass
class FakeRouter:
    weights: Weights = field(default_factory=lambda: Weights(0.0))
    backends: dict[str, Address] = field(default_factory=dict)
    fail: bool = False
    applied: list[float] = field(default_factory=list)

    def check(self) -> None:
        if self.fail:
            raise RouterError("proxy unreachable")

    def read(self) -> Weights:
        self.check()
        return self.weights

    def apply(self, weights: Weights) -> Weights:
        self.check()
        self.weights = weights
        self.applied.append(weights.canary)
        return weights

    def set_backend(self, arm: str, address: Address) -> None:
        self.check()
        self.backends[arm] = address


@dataclass
class FakeServing:
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    def start(self, model: str, version: str) -> Backend:
        self.started.append(version)
        return Backend(model, version, Address.parse(f"127.0.0.1:{18000 + int(version)}"))

    def stop(self, model: str, version: str) -> None:
        self.stopped.append(version)

    def healthy(self, backend: Backend) -> bool:
        return True

    def close(self) -> None:
        pass


@dataclass
class SimSource:
    """Cumulative error counts at 100 requests/s split by the configured weight."""

    error_rate: dict[str, float]
    rps: float = 100.0
    interval: float = 15.0
    seed: int = 0
    fail_next: int = 0
    group_rates: dict[str, dict[str, float]] | None = None
    reads: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def read(
        self, policy: Policy, arms: Arms, *, t: float, canary_weight: float, state: Any
    ) -> Measurement:
        self.reads += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise_error = MetricsError("Prometheus unreachable")
            return Measurement("error", None, dict(state or {}), str(raise_error))
        state = dict(state or {"b": [0, 0], "c": [0, 0]})
        n = self.rng.poisson(self.rps * self.interval)
        n_c = self.rng.binomial(n, canary_weight / 100.0)
        n_b = n - n_c
        e_b = self.rng.binomial(n_b, self.error_rate[arms.baseline])
        e_c = self.rng.binomial(n_c, self.error_rate[arms.canary])
        b = [state["b"][0] + int(e_b), state["b"][1] + int(n_b)]
        c = [state["c"][0] + int(e_c), state["c"][1] + int(n_c)]
        new_state = {"b": b, "c": c}
        metrics = {
            "errors": MetricCounts(
                baseline=RatioArm(counts=Counts(b[0], b[1])),
                canary=RatioArm(counts=Counts(c[0], c[1])),
            )
        }
        return Measurement(
            "ok", Snapshot(t=t, canary_weight=canary_weight, metrics=metrics), new_state
        )
