"""``canary run`` on a state directory that is full: a clear error naming it, exit status 1.

A really full file system needs a small mount (root only), so the test makes the daemon's
writes fail the way they do on one: the daemon process gets an ``RLIMIT_FSIZE`` of 1 KiB
(with SIGXFSZ ignored, a write past it fails with EFBIG instead of killing the process).
The 2-byte write probe fits; the SQLite store, whose first page is 4 KiB, does not, so this
checks that a store that cannot be written at start is reported, not just the probe.
Output goes to pipes, which the limit does not touch.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.proc import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
LIMIT = 1024  # bytes any one file of the daemon may grow to


def _full_disk() -> None:
    """In the child before exec: writes past LIMIT bytes fail with EFBIG."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_a_full_state_directory_is_a_clear_error_and_exit_status_1(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "credit-risk.yaml").write_text(
        (ROOT / "config/policies/credit-risk.yaml").read_text()
    )
    done = subprocess.run(
        [sys.executable, "-m", "canary.cli", "run", "--state-dir", str(state)],
        env={
            **_environ(),
            "CANARY_POLICIES": str(policies),
            "CANARY_LOG_FORMAT": "json",
            "CANARY_API_PORT": str(free_port()),
            "CANARY_MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
            "CANARY_PROMETHEUS_URL": "http://127.0.0.1:9",
        },
        preexec_fn=_full_disk,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert f"cannot use state directory {state}" in done.stderr, done.stderr[-2000:]
    # SQLite reports the EFBIG of its first page as a disk I/O error; the store names itself.
    assert f"store sqlite:///{state / 'canary.db'}: cannot create the tables" in done.stderr
    assert "Traceback" not in done.stderr
    assert '"event": "daemon.state_unusable"' in done.stdout + done.stderr
    assert not list(state.glob(".write-test-*"))  # the probe cleaned up after itself


def _environ() -> dict[str, str]:
    return dict(os.environ)
