"""A real MLflow tracking server for the whole test session, and cheap ways to fill it.

Starting ``mlflow server`` takes 9-16 s, so it is started once per session; tests isolate
themselves with unique model names (``unique_model_name``). Job execution is switched off:
with it the server also starts about eight worker processes and 1.8 GB of memory.

Versions are registered cheaply: a run with logged metrics (and dataset inputs, if asked)
plus ``create_model_version`` pointing at the run, with no model artifacts at all. Tests that
must serve a real model log one themselves.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness.proc import ManagedProcess, free_port, http_ok, require_binary

# The client in the test process must not print run URLs or retry for minutes.
CLIENT_ENV = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset a run logged as an input (what ``mlflow.log_input`` records)."""

    name: str
    digest: str
    source: str
    source_type: str = "local"
    context: str | None = "training"


@dataclass
class MlflowServer:
    """A running ``mlflow server``; ``url`` is its tracking URI."""

    url: str
    port: int
    workdir: Path
    process: ManagedProcess
    _experiment_id: str | None = field(default=None, init=False)

    def client(self) -> Any:
        """A fresh ``mlflow.MlflowClient`` on this server (the full client, for setup)."""
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.url)

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            client = self.client()
            name = "canary-tests"
            found = client.get_experiment_by_name(name)
            self._experiment_id = (
                found.experiment_id if found is not None else client.create_experiment(name)
            )
        return self._experiment_id

    def log_run(
        self,
        metrics: Mapping[str, float] | None = None,
        datasets: Sequence[DatasetSpec] = (),
        run_name: str | None = None,
    ) -> str:
        """A finished run with these metrics and dataset inputs; returns its run id."""
        from mlflow.entities import Dataset, DatasetInput, InputTag, Metric

        client = self.client()
        run = client.create_run(self.experiment_id(), run_name=run_name)
        run_id: str = run.info.run_id
        if metrics:
            now = 0
            client.log_batch(
                run_id,
                metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
            )
        if datasets:
            inputs = [
                DatasetInput(
                    Dataset(
                        name=spec.name,
                        digest=spec.digest,
                        source_type=spec.source_type,
                        source=spec.source,
                    ),
                    tags=(
                        [InputTag("mlflow.data.context", spec.context)]
                        if spec.context is not None
                        else []
                    ),
                )
                for spec in datasets
            ]
            client.log_inputs(run_id, datasets=inputs)
        client.set_terminated(run_id)
        return run_id

    def register_version(
        self,
        model: str,
        metrics: Mapping[str, float] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        aliases: Sequence[str] = (),
        datasets: Sequence[DatasetSpec] = (),
    ) -> str:
        """Register a new version of ``model`` backed by a fresh run; returns the version."""
        client = self.client()
        try:
            client.get_registered_model(model)
        except Exception:
            client.create_registered_model(model)
        run_id = self.log_run(metrics, datasets)
        version = client.create_model_version(
            model, source=f"runs:/{run_id}/model", run_id=run_id, tags=dict(tags or {})
        )
        number: str = str(version.version)
        for alias in aliases:
            client.set_registered_model_alias(model, alias, number)
        return number


def registry_policy(
    model: str,
    trigger: Mapping[str, Any],
    offline_gate: Mapping[str, Mapping[str, float]] | None = None,
    champion_alias: str = "champion",
) -> Any:
    """A valid Policy for ``model`` with this trigger and gate; the rest is a fixed minimum."""
    from canary.core.policy import Policy

    return Policy.model_validate(
        {
            "model": model,
            "trigger": dict(trigger),
            "champion_alias": champion_alias,
            "serving": {"address": "127.0.0.1:{port}", "start": ["serve", "{port}"]},
            "router": {"type": "haproxy", "runtime_api": "127.0.0.1:9999", "backend": "m"},
            "steps": [{"weight": 10}, {"weight": 50}],
            "analysis": {
                "metrics": [
                    {
                        "name": "errors",
                        "kind": "ratio",
                        "events": 'requests_total{code=~"5.."}',
                        "total": "requests_total",
                        "worse_when": "higher",
                    }
                ]
            },
            "offline_gate": {k: dict(v) for k, v in (offline_gate or {}).items()},
        }
    )


def unique_model_name(prefix: str = "m") -> str:
    """A registered-model name no other test uses (the server is shared by the session)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def start_mlflow_server(
    workdir: Path, *, port: int | None = None, name: str = "mlflow"
) -> MlflowServer:
    """``mlflow server`` on SQLite and local artifacts in ``workdir`` (no job workers),
    healthy on return; stopped again if it never becomes healthy. A fixed ``port`` lets a
    restart serve the same registry at the same address."""
    binary = require_binary("mlflow")
    port = port or free_port()
    process = ManagedProcess(
        name=name,
        argv=[
            binary,
            "server",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination",
            str(workdir / "art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        workdir=workdir,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **CLIENT_ENV},
    )
    url = f"http://127.0.0.1:{port}"
    process.start()
    try:
        process.wait_ready(lambda: http_ok(f"{url}/health"), timeout=120)
    except BaseException:
        process.stop()
        raise
    return MlflowServer(url=url, port=port, workdir=workdir, process=process)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` (SQLite + local artifacts) once; stop its process group after."""
    workdir = tmp_path_factory.mktemp("mlflow")
    saved = {key: os.environ.get(key) for key in CLIENT_ENV}
    os.environ.update(CLIENT_ENV)
    server: MlflowServer | None = None
    try:
        server = start_mlflow_server(workdir)
        yield server
    finally:
        if server is not None:
            server.process.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
