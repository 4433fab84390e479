"""The registry's plain types: validation of names and the text notifications use."""

from __future__ import annotations

import pytest

from canary.registry.base import (
    TAG_STATUS,
    Dataset,
    ModelVersion,
    Outcome,
    VersionDetails,
    VersionStatus,
)


def version(**tags: str) -> ModelVersion:
    return ModelVersion("credit-risk", "4", "runs:/abc/model", "abc", 0, dict(tags))


@pytest.mark.parametrize(
    ("model", "number"), [("credit risk", "1"), ("-rf", "1"), ("m", "0"), ("m", "1;rm"), ("m", "")]
)
def test_invalid_model_names_and_versions_are_refused(model, number) -> None:
    with pytest.raises(ValueError, match="invalid"):
        ModelVersion(model, number, "", None, 0)


def test_status_reads_the_tag_and_ignores_unknown_values() -> None:
    assert version().status is None
    assert version(**{TAG_STATUS: "rolled_back"}).status is VersionStatus.ROLLED_BACK
    assert version(**{TAG_STATUS: "weird"}).status is None
    assert VersionStatus.REJECTED.done
    assert not VersionStatus.IN_PROGRESS.done


def test_outcome_refuses_a_rollout_id_that_could_not_be_a_label() -> None:
    assert Outcome(VersionStatus.ROLLED_BACK, "errors up", "r-12:ab").rollout_id == "r-12:ab"
    with pytest.raises(ValueError, match="rollout id"):
        Outcome(VersionStatus.ROLLED_BACK, "x", "r 12\n")


def test_lineage_names_the_run_and_every_dataset() -> None:
    details = VersionDetails(
        version(),
        {},
        (
            Dataset("credit", "1a2b", "s3://bucket/credit.parquet", "s3", "training"),
            Dataset("holdout", "", "", "local"),
        ),
        run_name="big-cat-403",
    )
    assert details.lineage() == (
        "run big-cat-403 (abc), datasets: credit (training, digest 1a2b, "
        "s3://bucket/credit.parquet); holdout"
    )


def test_lineage_without_run_or_datasets_says_so() -> None:
    no_run = ModelVersion("m", "2", "s3://models/m/2", None, 0)
    assert VersionDetails(no_run, {}).lineage() == "source s3://models/m/2, no datasets logged"


def test_credentials_in_urls_never_reach_error_messages() -> None:
    from canary.registry.mlflow import _short, _without_credentials

    exc = RuntimeError("API request to https://alice:s3cret@mlflow.internal/api/2.0 failed")
    assert "s3cret" not in _short(exc)
    assert "https://mlflow.internal/api/2.0" in _short(exc)
    assert _without_credentials("https://alice:s3cret@mlflow.internal:5000/x") == (
        "https://mlflow.internal:5000/x"
    )
    assert _without_credentials("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
