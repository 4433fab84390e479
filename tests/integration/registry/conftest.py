"""One MlflowRegistry per test on the session's MLflow server."""

from __future__ import annotations

import pytest

from canary.registry.mlflow import MlflowRegistry
from tests.harness.mlflow_server import MlflowServer


@pytest.fixture
def registry(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowRegistry:
    # MlflowRegistry sets MLflow's process-wide HTTP settings; restore them after the test.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowRegistry(mlflow_server.url, timeout=10)
