"""`canary run` as a real process: readiness, SIGHUP reloads, SIGTERM, the leader lock."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.proc import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def start_daemon(
    tmp_path: Path, name: str, state: Path, policies: Path
) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = {
        "CANARY_POLICIES": str(policies),
        "CANARY_STATE_DIR": str(state),
        "CANARY_MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # nothing listens: polls fail fast
        "CANARY_PROMETHEUS_URL": "http://127.0.0.1:9",
        "CANARY_API_PORT": str(port),
        "CANARY_API_TOKEN": "secret-token-value-123",
        "CANARY_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/services/secret-webhook-path-456",
        "CANARY_LOG_FORMAT": "json",
        "CANARY_REGISTRY_POLL_INTERVAL": "1s",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    process = ManagedProcess(name, [sys.executable, "-m", "canary.cli", "run"], tmp_path, env)
    process.start()
    url = f"http://127.0.0.1:{port}"
    process.wait_ready(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=60)
    return process, url


def events(process: ManagedProcess) -> list[dict]:
    out = []
    for line in process.log_path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def wait_event(process: ManagedProcess, name: str, timeout: float = 20) -> dict:
    found: list[dict] = []

    def check() -> bool:
        found[:] = [e for e in events(process) if e["event"] == name]
        return bool(found)

    wait_until(check, timeout=timeout, what=f"event {name}")
    return found[-1]


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "credit-risk.yaml").write_text(
        (ROOT / "config/policies/credit-risk.yaml").read_text()
    )
    return folder


def test_sighup_keeps_the_old_policies_when_a_file_is_invalid(tmp_path, policies):
    process, url = start_daemon(tmp_path, "daemon", tmp_path / "state", policies)
    try:
        broken = policies / "fraud.yaml"
        broken.write_text(
            (ROOT / "config/policies/fraud-score-nginx.yaml")
            .read_text()
            .replace("\nsteps:", "\nstpes:")
        )
        process.signal(signal.SIGHUP)
        invalid = wait_event(process, "policy.reload_rejected")
        assert invalid["kept"] == ["credit-risk"]
        problems = [e["problem"] for e in events(process) if e["event"] == "policy.invalid"]
        assert any("fraud.yaml:" in p and "did you mean `steps`" in p for p in problems)
        assert process.running
        assert httpx.get(f"{url}/readyz").status_code == 200

        broken.write_text((ROOT / "config/policies/fraud-score-nginx.yaml").read_text())
        process.signal(signal.SIGHUP)
        wait_until(
            lambda: (
                [e for e in events(process) if e["event"] == "policy.loaded"][-1]["models"]
                == ["credit-risk", "fraud-score"]
            ),
            timeout=20,
            what="reload with two policies",
        )
        metrics = httpx.get(f"{url}/metrics").text
        assert "canary_policy_reload_errors_total 1.0" in metrics
    finally:
        process.stop()


def test_sigterm_exits_cleanly_and_a_standby_takes_over(tmp_path, policies):
    state = tmp_path / "state"
    first, first_url = start_daemon(tmp_path, "first", state, policies)
    second, second_url = start_daemon(tmp_path, "second", state, policies)
    try:
        assert "standby" in httpx.get(f"{second_url}/readyz").text
        assert "canary_leader 1.0" in httpx.get(f"{first_url}/metrics").text
        assert "canary_leader 0.0" in httpx.get(f"{second_url}/metrics").text
        first.signal(signal.SIGTERM)
        assert first.popen.wait(timeout=40) == 0
        assert wait_event(first, "daemon.stopped")
        wait_event(second, "daemon.leading", timeout=20)
        assert httpx.get(f"{second_url}/readyz").text == "ready"
    finally:
        first.stop()
        second.stop()


def test_a_state_directory_that_cannot_be_used_is_a_clear_error(tmp_path, policies):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    process = ManagedProcess(
        "bad-state",
        [
            sys.executable,
            "-m",
            "canary.cli",
            "run",
            "--state-dir",
            str(not_a_dir / "state"),
            "--policies",
            str(policies),
        ],
        tmp_path,
        {"CANARY_LOG_FORMAT": "json", "CANARY_API_PORT": str(free_port())},
    )
    process.start()
    assert process.popen.wait(timeout=60) == 1
    assert "cannot use state directory" in process.log_path.read_text()


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Makes ``directory`` refuse writes, also for root (who ignores permission bits): mode
    0555 for a normal user, the immutable attribute (``chattr +i``) for root."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root, and no chattr to make a directory read-only")
    made = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"root, and this file system refuses chattr +i: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_a_read_only_state_directory_is_a_clear_error(tmp_path, policies):
    state = tmp_path / "state"
    state.mkdir()
    with read_only(state):
        with pytest.raises(PermissionError):  # the directory really refuses writes
            (state / "probe").write_text("x")
        process = ManagedProcess(
            "read-only-state",
            [sys.executable, "-m", "canary.cli", "run", "--state-dir", str(state)],
            tmp_path,
            {
                "CANARY_LOG_FORMAT": "json",
                "CANARY_API_PORT": str(free_port()),
                "CANARY_POLICIES": str(policies),
            },
        )
        process.start()
        assert process.popen.wait(timeout=60) == 1
    output = process.log_path.read_text()
    assert f"cannot use state directory {state}" in output
    assert "Traceback" not in output
    assert list(state.iterdir()) == []


def test_secrets_never_reach_the_logs_or_the_api(tmp_path, policies):
    process, url = start_daemon(tmp_path, "daemon", tmp_path / "state", policies)
    try:
        texts = [
            httpx.get(f"{url}{path}").text
            for path in ("/rollouts", "/metrics", "/status", "/openapi.json", "/readyz")
        ]
    finally:
        process.stop()
    logged = process.log_path.read_text()
    assert "daemon.starting" in logged
    for text in [logged, *texts]:
        assert "secret-token-value-123" not in text
        assert "secret-webhook-path-456" not in text
