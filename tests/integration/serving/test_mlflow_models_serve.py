"""The real thing: ``mlflow models serve`` of a logged sklearn model, from the policy's argv.

Slow (about 15 s to log the model and 25 s until the server answers), so marked ``slow``;
it shows that the documented start command works as written, that MLflow's own server
(which forks uvicorn) is reached through the health URL, and that stopping it stops the
forked worker too.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from canary.core.policy import PortRange, Serving
from canary.serving.process import ProcessServing, _start_time
from tests.harness.mlflow_server import MlflowServer, unique_model_name
from tests.harness.proc import free_port, require_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_mlflow_models_serve_of_a_registered_version(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    mlflow_bin = require_binary("mlflow")
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    model = unique_model_name("sk")
    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    fitted = LogisticRegression().fit(features, np.array([0, 0, 1, 1]))
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        mlflow.set_experiment("canary-serving-tests")
        with mlflow.start_run():
            logged = mlflow.sklearn.log_model(
                fitted, name="model", registered_model_name=model, input_example=features[:1]
            )
    finally:
        mlflow.set_tracking_uri(previous_uri)
    version = str(logged.registered_model_version)

    first = free_port()
    serving = ProcessServing(
        Serving(
            address="127.0.0.1:{port}",
            start=[
                mlflow_bin,
                "models",
                "serve",
                "-m",
                "models:/{model}/{version}",
                "-p",
                "{port}",
                "--env-manager",
                "local",
            ],
            health="http://{address}/health",
            ports=PortRange(first=first, last=min(first + 50, 65535)),
            ready_timeout=120,
        ),
        tmp_path,
        env={
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            # mlflow models serve runs `uvicorn` from PATH: the venv's bin must be on it.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        },
    )
    workers: list[int] = []
    try:
        backend = serving.start(model, version)
        answer = httpx.post(
            f"http://{backend.address}/invocations",
            json={"inputs": [[0.0], [3.0]]},
            timeout=30,
        )
        assert answer.status_code == 200
        assert answer.json() == {"predictions": [0, 1]}
        workers += [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _pgid(int(p.name)) == backend.pid
        ]
        assert len(workers) >= 2  # mlflow itself and the uvicorn it forked
    finally:
        serving.stop_all()
    # SIGKILL is delivered at once, but a process takes a moment to be gone.
    deadline = time.monotonic() + 10
    while any(_start_time(pid) is not None for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in workers if _start_time(pid) is not None] == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
