"""A down or silent MLflow fails within seconds as RegistryError, never a hang or a crash."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from canary.errors import RegistryError
from canary.registry.base import Outcome, VersionStatus
from canary.registry.mlflow import MlflowRegistry
from canary.registry.retry import Backoff, retry
from tests.harness.mlflow_server import registry_policy
from tests.harness.proc import free_port

pytestmark = pytest.mark.integration

POLICY = registry_policy("credit-risk", {"alias": "challenger"})


@pytest.fixture(autouse=True)
def _restore_mlflow_http_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_a_stopped_server_fails_fast_on_every_call() -> None:
    registry = MlflowRegistry(f"http://127.0.0.1:{free_port()}", timeout=2)
    calls: list[Callable[[], object]] = [
        lambda: registry.candidates(POLICY),
        lambda: registry.champion(POLICY),
        lambda: registry.details("credit-risk", "3"),
        lambda: registry.record(POLICY, "3", Outcome(VersionStatus.ROLLED_BACK, "x")),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(RegistryError, match=r"MLflow get_\w+ failed") as caught:
            call()
        assert time.monotonic() - started < 2.0
        assert caught.value.__cause__ is not None


def test_a_server_that_never_answers_fails_after_the_timeout(silent_server: int) -> None:
    registry = MlflowRegistry(f"http://127.0.0.1:{silent_server}", timeout=1)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="get_registered_model failed"):
        registry.candidates(POLICY)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 5.0


def test_the_retry_helper_keeps_trying_a_down_server_then_gives_up() -> None:
    registry = MlflowRegistry(f"http://127.0.0.1:{free_port()}", timeout=2)
    sleeps: list[float] = []
    with pytest.raises(RegistryError):
        retry(
            lambda: registry.candidates(POLICY),
            what="candidates",
            attempts=3,
            backoff=Backoff(base=0.5, jitter=0.0),
            sleep=sleeps.append,
        )
    assert sleeps == [0.5, 1.0]
