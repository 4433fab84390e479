"""The watcher over a fake registry: gate, reject, admit the newest version that passes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from canary.core.policy import Policy
from canary.errors import RegistryError
from canary.registry.base import (
    TAG_STATUS,
    ModelVersion,
    Outcome,
    VersionDetails,
    VersionStatus,
)
from canary.registry.watcher import watch
from tests.harness.mlflow_server import registry_policy


@dataclass
class FakeRegistry:
    """Versions with metrics in memory; records what the watcher writes."""

    metrics: dict[str, dict[str, float]]
    champion_version: str | None = "1"
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    recorded: list[tuple[str, Outcome]] = field(default_factory=list)
    fail_details: bool = False

    def _version(self, number: str) -> ModelVersion:
        return ModelVersion("m", number, "runs:/r/model", None, 0, self.tags.get(number, {}))

    def champion(self, policy: Policy) -> ModelVersion | None:
        return None if self.champion_version is None else self._version(self.champion_version)

    def candidates(self, policy: Policy) -> list[ModelVersion]:
        waiting = [
            self._version(n)
            for n in self.metrics
            if n != self.champion_version and TAG_STATUS not in self.tags.get(n, {})
        ]
        return sorted(waiting, key=lambda v: v.number, reverse=True)

    def details(self, model: str, version: str) -> VersionDetails:
        if self.fail_details:
            raise RegistryError("MLflow get_run failed: connection refused")
        return VersionDetails(self._version(version), self.metrics[version])

    def record(self, policy: Policy, version: str, outcome: Outcome) -> tuple[str, ...]:
        self.recorded.append((version, outcome))
        self.tags.setdefault(version, {})[TAG_STATUS] = outcome.status.value
        return (f"tag {TAG_STATUS}={outcome.status.value}",)


POLICY = registry_policy(
    "m", {"new_versions": True}, {"accuracy": {"min": 0.8, "max_drop_vs_champion": 0.02}}
)


def test_the_newest_passing_version_is_admitted_and_older_ones_are_left_alone() -> None:
    registry = FakeRegistry(
        {"1": {"accuracy": 0.90}, "2": {"accuracy": 0.89}, "3": {"accuracy": 0.91}}
    )
    result = watch(registry, POLICY)
    assert result.admitted is not None
    assert result.admitted.candidate.version.version == "3"
    assert result.admitted.champion.version.version == "1"
    assert result.admitted.gate.passed
    assert result.rejected == ()
    assert registry.recorded == []


def test_failing_versions_are_marked_rejected_with_the_gate_reason_and_skipped() -> None:
    registry = FakeRegistry(
        {"1": {"accuracy": 0.90}, "2": {"accuracy": 0.895}, "3": {"accuracy": 0.70}, "4": {}}
    )
    result = watch(registry, POLICY, rollout_id="watch-7")
    assert result.admitted is not None
    assert result.admitted.candidate.version.version == "2"
    assert [r.candidate.version.version for r in result.rejected] == ["4", "3"]
    assert [(v, o.status, o.rollout_id) for v, o in registry.recorded] == [
        ("4", VersionStatus.REJECTED, "watch-7"),
        ("3", VersionStatus.REJECTED, "watch-7"),
    ]
    assert registry.recorded[0][1].reason == (
        "offline gate failed: accuracy was not logged by the candidate"
    )
    assert "accuracy 0.7 < min 0.8" in registry.recorded[1][1].reason
    # A rejected version is never offered again.
    again = watch(registry, POLICY)
    assert again.rejected == ()
    assert again.admitted is not None
    assert again.admitted.candidate.version.version == "2"


def test_nothing_is_admitted_when_every_candidate_fails() -> None:
    registry = FakeRegistry({"1": {"accuracy": 0.9}, "2": {"accuracy": 0.5}})
    result = watch(registry, POLICY)
    assert result.admitted is None
    assert [r.candidate.version.version for r in result.rejected] == ["2"]


def test_without_a_champion_nothing_is_gated_rejected_or_admitted() -> None:
    registry = FakeRegistry({"2": {"accuracy": 0.1}}, champion_version=None)
    result = watch(registry, POLICY)
    assert (result.champion, result.admitted, result.rejected) == (None, None, ())
    assert registry.recorded == []


def test_no_candidates_reads_nothing_more() -> None:
    registry = FakeRegistry({"1": {"accuracy": 0.9}}, fail_details=True)
    result = watch(registry, POLICY)
    assert result.admitted is None
    assert result.champion is not None


def test_a_registry_failure_propagates_as_registry_error() -> None:
    registry = FakeRegistry({"1": {"accuracy": 0.9}, "2": {"accuracy": 0.9}}, fail_details=True)
    with pytest.raises(RegistryError, match="connection refused"):
        watch(registry, POLICY)
    assert registry.recorded == []
