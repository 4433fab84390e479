"""The offline gate and a version's lineage, read from a real MLflow server."""

from __future__ import annotations

import pytest

from canary.registry.base import TAG_REASON, TAG_STATUS
from canary.registry.mlflow import MlflowRegistry
from canary.registry.watcher import watch
from tests.harness.mlflow_server import (
    DatasetSpec,
    MlflowServer,
    registry_policy,
    unique_model_name,
)

pytestmark = pytest.mark.integration

GATE = {
    "accuracy": {"min": 0.85, "max_drop_vs_champion": 0.01},
    "accuracy_group_b": {"min": 0.80},
    "fairness_dp_difference": {"max": 0.10},
}
GOOD = {"accuracy": 0.91, "accuracy_group_b": 0.86, "fairness_dp_difference": 0.04}


def test_a_version_failing_the_gate_is_rejected_and_never_offered_again(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, GOOD, aliases=["champion"])
    unfair = {**GOOD, "accuracy": 0.912, "fairness_dp_difference": 0.17}
    mlflow_server.register_version(model, unfair, aliases=["challenger"])
    policy = registry_policy(model, {"alias": "challenger"}, GATE)

    result = watch(registry, policy, rollout_id="w-1")
    assert result.admitted is None
    (rejection,) = result.rejected
    assert rejection.candidate.version.version == "2"
    assert rejection.gate.reason == ("offline gate failed: fairness_dp_difference 0.17 > max 0.1")
    tags = mlflow_server.client().get_model_version(model, "2").tags
    assert tags[TAG_STATUS] == "rejected"
    assert tags[TAG_REASON] == rejection.gate.reason
    assert "challenger" not in mlflow_server.client().get_registered_model(model).aliases
    assert registry.candidates(policy) == []

    # A new challenger that passes is admitted with the champion it is compared to.
    mlflow_server.register_version(model, {**GOOD, "accuracy": 0.905}, aliases=["challenger"])
    again = watch(registry, policy)
    assert again.rejected == ()
    assert again.admitted is not None
    assert again.admitted.candidate.version.version == "3"
    assert again.admitted.champion.version.version == "1"
    assert again.admitted.gate.passed
    assert len(again.admitted.gate.checks) == 4


def test_a_missing_metric_rejects_the_version_with_its_name(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, GOOD, aliases=["champion"])
    mlflow_server.register_version(model, {"accuracy": 0.95, "fairness_dp_difference": 0.0})
    policy = registry_policy(model, {"new_versions": True}, GATE)

    result = watch(registry, policy)
    assert result.admitted is None
    assert result.rejected[0].gate.reason == (
        "offline gate failed: accuracy_group_b was not logged by the candidate"
    )
    assert mlflow_server.client().get_model_version(model, "2").tags[TAG_STATUS] == "rejected"


def test_a_drop_against_the_champion_is_caught(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    mlflow_server.register_version(model, GOOD, aliases=["champion"])
    mlflow_server.register_version(model, {**GOOD, "accuracy": 0.88}, tags={"ready": "true"})
    policy = registry_policy(model, {"tag": {"key": "ready", "value": "true"}}, GATE)

    result = watch(registry, policy)
    assert result.admitted is None
    assert "accuracy dropped 0.03 vs champion (0.91 -> 0.88)" in result.rejected[0].gate.reason
    assert registry.candidates(policy) == []


def test_details_show_the_run_metrics_and_the_datasets_it_logged(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    model = unique_model_name()
    train = DatasetSpec("credit-train", "8f3a9c", '{"uri": "s3://data/credit/train.parquet"}')
    holdout = DatasetSpec(
        "credit-holdout", "77aa01", '{"uri": "s3://data/credit/holdout.parquet"}', "s3", "eval"
    )
    mlflow_server.register_version(model, GOOD, datasets=[train, holdout])

    details = registry.details(model, "1")
    assert dict(details.metrics) == GOOD
    assert details.run_name
    by_name = {d.name: d for d in details.datasets}
    assert set(by_name) == {"credit-train", "credit-holdout"}
    assert by_name["credit-train"].digest == "8f3a9c"
    assert by_name["credit-train"].source == "s3://data/credit/train.parquet"
    assert by_name["credit-train"].context == "training"
    assert by_name["credit-holdout"].source_type == "s3"
    assert by_name["credit-holdout"].context == "eval"
    lineage = details.lineage()
    assert details.version.run_id is not None
    assert details.version.run_id in lineage
    assert "credit-train (training, digest 8f3a9c, s3://data/credit/train.parquet)" in lineage


def test_metrics_logged_on_an_mlflow3_logged_model_count_and_win(
    mlflow_server: MlflowServer, registry: MlflowRegistry
) -> None:
    """evaluate() in MLflow 3 logs on the logged model, often from a separate run."""
    client = mlflow_server.client()
    model = unique_model_name()
    client.create_registered_model(model)
    train_run = mlflow_server.log_run({"accuracy": 0.80, "train_loss": 0.3})
    logged = client.create_logged_model(
        mlflow_server.experiment_id(), name="model", source_run_id=train_run
    )
    eval_run = mlflow_server.log_run()
    client.log_metric(eval_run, "accuracy", 0.93, model_id=logged.model_id)
    client.log_metric(eval_run, "fairness_dp_difference", 0.02, model_id=logged.model_id)
    client.create_model_version(
        model, source=f"models:/{logged.model_id}", run_id=train_run, model_id=logged.model_id
    )

    metrics = registry.details(model, "1").metrics
    assert metrics == {"accuracy": 0.93, "train_loss": 0.3, "fairness_dp_difference": 0.02}
