"""Log each trained version to MLflow as a real run, and register it.

Each version gets what a training pipeline would leave behind: a run with its parameters,
its offline evaluation metrics (what the offline gate reads), its training and evaluation
data sets as run inputs (``mlflow.log_input``, what the lineage line shows), and the model
itself (``mlflow.sklearn.log_model`` with a signature and an input example), registered as
the next version of the registered model. The data sets are also written as CSV files in
the work folder, which is the source each MLflow data set points at.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canary.core import names
from canary.demo.data import LABEL, TrainingSet
from canary.demo.evaluation import Evaluation
from canary.demo.models import N_ESTIMATORS, TRUSTED_TYPES, inputs

EXPERIMENT = "canary-demo"


@dataclass(frozen=True)
class Registered:
    """A registered version and where it came from."""

    version: str
    run_id: str
    evaluation: Evaluation


def quiet_mlflow(tracking_uri: str) -> None:
    """Point this process's MLflow client at the server, without run URLs or retries."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ["MLFLOW_LOGGING_LEVEL"] = "ERROR"
    logging.getLogger("mlflow").setLevel(logging.ERROR)


def register_version(
    tracking_uri: str,
    model_name: str,
    label: str,
    model: Any,
    training: TrainingSet,
    evaluation: Evaluation,
    data_dir: Path,
) -> Registered:
    """Log one trained version as a run and register it; returns its version number."""
    names.check(names.MODEL_NAME, model_name, "model name")
    quiet_mlflow(tracking_uri)
    import mlflow
    import mlflow.data
    import mlflow.sklearn

    mlflow.set_tracking_uri(tracking_uri)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        # MLflow prints progress ("Created version 2 ...") and warns about things that do
        # not apply here (e.g. how a CSV data set source could be read); the timeline says
        # what matters, and errors still raise.
        warnings.simplefilter("ignore")
        return _log_and_register(mlflow, model_name, label, model, training, evaluation, data_dir)


def _log_and_register(
    mlflow: Any,
    model_name: str,
    label: str,
    model: Any,
    training: TrainingSet,
    evaluation: Evaluation,
    data_dir: Path,
) -> Registered:
    mlflow.set_experiment(EXPERIMENT)
    data_dir.mkdir(parents=True, exist_ok=True)
    sources = {}
    for part, frame in (("train", training.train), ("validation", training.validation)):
        path = data_dir / f"{training.name}-{part}.csv"
        frame.to_csv(path, index=False)
        sources[part] = path
    with mlflow.start_run(run_name=f"{model_name}-{label}") as run:
        mlflow.log_params(
            {
                "model": "GradientBoostingClassifier",
                "n_estimators": N_ESTIMATORS,
                "training_rows": len(training.train),
                "validation_rows": len(training.validation),
                "data": training.description,
            }
        )
        mlflow.log_input(
            mlflow.data.from_pandas(
                training.train,
                source=str(sources["train"]),
                targets=LABEL,
                name=training.name,
            ),
            context="training",
        )
        mlflow.log_input(
            mlflow.data.from_pandas(
                training.validation,
                source=str(sources["validation"]),
                targets=LABEL,
                name=f"{training.name}-validation",
            ),
            context="evaluation",
        )
        mlflow.log_metrics(evaluation.mlflow_metrics())
        info = mlflow.sklearn.log_model(
            model, name="model", **model_artifact_options(model, training.train)
        )
        run_id = str(run.info.run_id)
    version = mlflow.register_model(info.model_uri, model_name)
    return Registered(str(version.version), run_id, evaluation)


def model_artifact_options(model: Any, frame: Any) -> dict[str, Any]:
    """How a version's model is saved: its signature (the input columns and their types,
    which the scoring server reads), an input example (its warm-up request), the
    requirements and the types skops may load."""
    import pandas as pd  # type: ignore[import-untyped]
    import sklearn  # type: ignore[import-untyped]
    from mlflow.models import infer_signature

    features = inputs(frame)
    return {
        "signature": infer_signature(features, model.predict(features.head(50))),
        "input_example": features.head(1),
        # Given, so MLflow does not spend seconds inferring them in a subprocess.
        "pip_requirements": [f"scikit-learn=={sklearn.__version__}", f"pandas=={pd.__version__}"],
        "skops_trusted_types": list(TRUSTED_TYPES),
    }


def set_alias(tracking_uri: str, model_name: str, alias: str, version: str) -> None:
    """Point ``alias`` of the registered model at ``version`` (what a person does to ask
    for a rollout, or to crown the first champion)."""
    names.check(names.MODEL_NAME, model_name, "model name")
    names.check(names.ALIAS, alias, "alias")
    names.check(names.VERSION, version, "model version")
    quiet_mlflow(tracking_uri)
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(model_name, alias, version)


def aliases(tracking_uri: str, model_name: str) -> dict[str, str]:
    """alias -> version of the registered model, as the registry holds them now."""
    quiet_mlflow(tracking_uri)
    from mlflow import MlflowClient

    registered = MlflowClient(tracking_uri=tracking_uri).get_registered_model(model_name)
    return {str(k): str(v) for k, v in (registered.aliases or {}).items()}


def version_tags(tracking_uri: str, model_name: str, version: str) -> dict[str, str]:
    """The tags of one version (canary writes its outcome there)."""
    quiet_mlflow(tracking_uri)
    from mlflow import MlflowClient

    found = MlflowClient(tracking_uri=tracking_uri).get_model_version(model_name, version)
    return {str(k): str(v) for k, v in (found.tags or {}).items()}
