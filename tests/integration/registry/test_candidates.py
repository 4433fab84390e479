"""Finding candidates on a real MLflow server, for each kind of trigger."""

from __future__ import annotations

import pytest

from canary.registry.base import TAG_STATUS
from canary.registry.mlflow import MlflowRegistry
from tests.harness.mlflow_server import MlflowServer, registry_policy, unique_model_name

pytestmark = pytest.mark.integration


def versions(found) -> list[str]:
    return [v.version for v in found]


def test_alias_trigger_finds_the_version_holding_the_alias(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["champion"])
    mlflow_server.register_version(model, aliases=["challenger"])
    mlflow_server.register_version(model)
    policy = registry_policy(model, {"alias": "challenger"})

    found = registry.candidates(policy)
    assert versions(found) == ["2"]
    assert found[0].aliases == ("challenger",)
    assert found[0].run_id is not None
    champion = registry.champion(policy)
    assert champion is not None
    assert (champion.version, champion.aliases) == ("1", ("champion",))


def test_alias_trigger_on_the_champion_itself_finds_nothing(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["champion", "challenger"])
    assert registry.candidates(registry_policy(model, {"alias": "challenger"})) == []


def test_tag_trigger_finds_versions_with_that_exact_tag_value(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    ready = {"ci.stage/ready": "yes: passed"}
    mlflow_server.register_version(model, tags=ready, aliases=["champion"])  # champion: never
    mlflow_server.register_version(model, tags=ready)
    mlflow_server.register_version(model)
    mlflow_server.register_version(model, tags={"ci.stage/ready": "no"})
    mlflow_server.register_version(model, tags=ready)
    policy = registry_policy(model, {"tag": {"key": "ci.stage/ready", "value": "yes: passed"}})

    assert versions(registry.candidates(policy)) == ["5", "2"]


def test_new_versions_trigger_finds_every_version_newer_than_the_champion(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    for _ in range(5):
        mlflow_server.register_version(model)
    mlflow_server.client().set_registered_model_alias(model, "champion", "3")
    policy = registry_policy(model, {"new_versions": True})

    assert versions(registry.candidates(policy)) == ["5", "4"]


def test_new_versions_without_a_champion_finds_nothing(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model)
    policy = registry_policy(model, {"new_versions": True})
    assert registry.candidates(policy) == []
    assert registry.champion(policy) is None


def test_done_versions_are_never_candidates_but_in_progress_ones_are(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, aliases=["champion"])
    for status in ("promoted", "rolled_back", "rejected", "aborted", "in_progress"):
        mlflow_server.register_version(model, tags={TAG_STATUS: status})
    policy = registry_policy(model, {"new_versions": True})
    found = registry.candidates(policy)
    assert versions(found) == ["6"]
    assert found[0].tags[TAG_STATUS] == "in_progress"


def test_a_model_that_is_not_registered_has_no_candidates_and_no_champion(
    registry: MlflowRegistry,
) -> None:
    policy = registry_policy(unique_model_name(), {"alias": "challenger"})
    assert registry.candidates(policy) == []
    assert registry.champion(policy) is None


def test_many_versions_are_read_across_pages(
    mlflow_server: MlflowServer, registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("canary.registry.mlflow._PAGE_SIZE", 2)
    model = unique_model_name()
    for _ in range(6):
        mlflow_server.register_version(model, tags={"ready": "true"})
    policy = registry_policy(model, {"tag": {"key": "ready", "value": "true"}})
    assert versions(registry.candidates(policy)) == ["6", "5", "4", "3", "2", "1"]
