"""Start and stop real server processes for tests.

Every service the tests talk to (MLflow, Prometheus, HAProxy, nginx, Envoy, our model
server) is a real process on a free loopback port in a temporary folder. This module holds
the three things they all need: a free port, a binary that may be missing, and a process
that is waited for by polling and always stopped with its whole process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str) -> str:
    """Path of `name`, or skip the test; under CI=true a missing binary fails the run.

    CI must never pass by silently skipping the real-service tests.
    """
    path = shutil.which(name)
    if path is None:
        venv_bin = Path(sys.executable).parent / name
        if venv_bin.exists():
            path = str(venv_bin)
    if path is None:
        message = f"{name!r} is not installed (needed for a real-service test)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI=true requires it", pytrace=False)
        pytest.skip(message)
    return path


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll `check` until it returns True; fail with the process log if it never does.

    Never a fixed sleep: a service is ready when it answers, not after a guess.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}\n{_tail(log)}")
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not ready yet is expected while polling
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f}s\n{_tail(log)}")


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET url answers 2xx."""
    response = httpx.get(url, timeout=timeout)
    return response.is_success


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class ManagedProcess:
    """A server process started in its own process group, with its output in a log file."""

    name: str
    argv: Sequence[str]
    workdir: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> ManagedProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        return self

    def wait_ready(self, check: Callable[[], bool], *, timeout: float = 30.0) -> None:
        wait_until(check, timeout=timeout, what=self.name, process=self.popen, log=self.log_path)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)
