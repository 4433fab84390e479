"""Recording outcomes on a real MLflow server: aliases, tags, and idempotence."""

from __future__ import annotations

import pytest

from canary.registry.base import (
    TAG_PREVIOUS_CHAMPION,
    TAG_REASON,
    TAG_ROLLOUT_ID,
    TAG_STATUS,
    Outcome,
    VersionStatus,
)
from canary.registry.mlflow import MlflowRegistry
from tests.harness.mlflow_server import MlflowServer, registry_policy, unique_model_name

pytestmark = pytest.mark.integration


def state(server: MlflowServer, model: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The aliases of the model and the tags of every version, as MLflow has them."""
    client = server.client()
    aliases = dict(client.get_registered_model(model).aliases)
    tags = {v.version: dict(v.tags) for v in client.search_model_versions(f"name = '{model}'")}
    return aliases, tags


def test_promotion_moves_the_champion_alias_and_remembers_the_previous_champion(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["champion"])
    mlflow_server.register_version(model, aliases=["challenger"])
    policy = registry_policy(model, {"alias": "challenger"})
    outcome = Outcome(VersionStatus.PROMOTED, "all checks passed", "r-1")

    changes = registry.record(policy, "2", outcome)
    aliases, tags = state(mlflow_server, model)
    assert aliases == {"champion": "2"}
    assert tags["2"][TAG_PREVIOUS_CHAMPION] == "1"
    assert tags["2"][TAG_STATUS] == "promoted"
    assert tags["2"][TAG_ROLLOUT_ID] == "r-1"
    assert tags["1"] == {}
    assert "alias champion -> 2" in changes
    assert "alias challenger removed" in changes

    # Again: nothing to change, nothing fails, and the previous champion is still 1.
    assert registry.record(policy, "2", outcome) == ()
    assert state(mlflow_server, model) == (aliases, tags)
    champion = registry.champion(policy)
    assert champion is not None
    assert champion.version == "2"


def test_an_interrupted_promotion_completes_when_run_again(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["champion"])
    mlflow_server.register_version(model)
    # The first run got as far as the previous-champion tag, then stopped.
    mlflow_server.client().set_model_version_tag(model, "2", TAG_PREVIOUS_CHAMPION, "1")
    policy = registry_policy(model, {"new_versions": True})

    changes = registry.record(policy, "2", Outcome(VersionStatus.PROMOTED, rollout_id="r-2"))
    aliases, tags = state(mlflow_server, model)
    assert aliases == {"champion": "2"}
    assert tags["2"][TAG_PREVIOUS_CHAMPION] == "1"
    assert not any(c.startswith(f"tag {TAG_PREVIOUS_CHAMPION}") for c in changes)


def test_a_first_promotion_without_champion_records_no_previous_one(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["challenger"])
    policy = registry_policy(model, {"alias": "challenger"})
    registry.record(policy, "1", Outcome(VersionStatus.PROMOTED))
    aliases, tags = state(mlflow_server, model)
    assert aliases == {"champion": "1"}
    assert TAG_PREVIOUS_CHAMPION not in tags["1"]


def test_rollback_tags_the_version_and_removes_its_trigger_alias(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["champion"])
    mlflow_server.register_version(model, aliases=["challenger"])
    policy = registry_policy(model, {"alias": "challenger"})
    reason = "errors: canary 2.1% vs baseline 0.9% (e-value 41 > 20)"
    outcome = Outcome(VersionStatus.ROLLED_BACK, reason, "r-9")

    registry.record(policy, "2", outcome)
    aliases, tags = state(mlflow_server, model)
    assert aliases == {"champion": "1"}
    assert tags["2"] == {TAG_STATUS: "rolled_back", TAG_REASON: reason, TAG_ROLLOUT_ID: "r-9"}
    assert registry.candidates(policy) == []

    assert registry.record(policy, "2", outcome) == ()
    assert state(mlflow_server, model) == (aliases, tags)


def test_rollback_leaves_the_trigger_alias_alone_once_it_points_elsewhere(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["champion"])
    mlflow_server.register_version(model)
    mlflow_server.register_version(model, aliases=["challenger"])  # a newer challenger
    policy = registry_policy(model, {"alias": "challenger"})

    registry.record(policy, "2", Outcome(VersionStatus.ROLLED_BACK, "worse", "r-3"))
    aliases, _ = state(mlflow_server, model)
    assert aliases == {"champion": "1", "challenger": "3"}
    assert [v.version for v in registry.candidates(policy)] == ["3"]


def test_a_long_reason_is_cut_to_a_readable_length(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["champion"])
    mlflow_server.register_version(model)
    policy = registry_policy(model, {"new_versions": True})
    registry.record(policy, "2", Outcome(VersionStatus.REJECTED, "x" * 10_000))
    _, tags = state(mlflow_server, model)
    assert tags["2"][TAG_REASON] == "x" * 2000


def test_in_progress_never_overwrites_a_final_status(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["champion"])
    mlflow_server.register_version(model)
    policy = registry_policy(model, {"new_versions": True})
    assert registry.record(policy, "2", Outcome(VersionStatus.IN_PROGRESS, rollout_id="r-4"))
    registry.record(policy, "2", Outcome(VersionStatus.ABORTED, "stopped by an operator"))
    assert registry.record(policy, "2", Outcome(VersionStatus.IN_PROGRESS)) == ()
    _, tags = state(mlflow_server, model)
    assert tags["2"][TAG_STATUS] == "aborted"
    assert tags["2"][TAG_ROLLOUT_ID] == "r-4"
