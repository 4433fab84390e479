"""The real servers the demo runs, each a process of its own in the work folder.

MLflow, Prometheus, HAProxy, the champion's scoring server and the ``canary run`` daemon
are started here, each in its own process group (so stopping one also stops whatever it
forked) with its output in ``WORKDIR/NAME.log``, on free loopback ports. A service is ready
when it answers, never after a fixed sleep; one that exits or does not answer in time is a
``DemoError`` carrying the end of its log, which is where the cause is written.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from canary.errors import CanaryError

_TAIL_LINES = 30


class DemoError(CanaryError):
    """The demo could not go on; the message says what failed and where to look."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    for _ in range(200):
        first = free_port()
        if first + count < 65535 and all(port_is_free(p) for p in range(first, first + count)):
            return first
    raise DemoError(f"no {count} consecutive free ports on 127.0.0.1")


def find_binary(name: str) -> str:
    """Path of a server binary: on PATH, next to this Python, or in the sbin folders."""
    found = shutil.which(name)
    if found:
        return found
    for folder in (Path(sys.executable).parent, Path("/usr/sbin"), Path("/usr/local/sbin")):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise DemoError(f"{name} is not installed: run `bash scripts/setup.sh` first")


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET ``url`` answers 2xx (False when it does not answer at all)."""
    try:
        return httpx.get(url, timeout=timeout).is_success
    except httpx.HTTPError:
        return False


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    service: Service | None = None,
) -> None:
    """Poll ``check`` until True; DemoError if the service exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if service is not None and not service.running:
            raise DemoError(
                f"{what}: {service.name} exited with code {service.returncode}; end of "
                f"{service.log_path}:\n{service.log_tail()}"
            )
        if check():
            return
        if time.monotonic() >= deadline:
            tail = f"; end of {service.log_path}:\n{service.log_tail()}" if service else ""
            raise DemoError(f"{what}: not done after {timeout:.0f}s{tail}")
        time.sleep(interval)


@dataclass
class Service:
    """One server process: started in its own group, output in ``workdir/NAME.log``."""

    name: str
    argv: Sequence[str]
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> Service:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        try:
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
        except OSError as exc:
            raise DemoError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def wait_ready(self, check: Callable[[], bool], timeout: float) -> Service:
        wait_until(check, timeout=timeout, what=f"{self.name} did not become ready", service=self)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


def python_module(
    name: str, module: str, args: Sequence[str], workdir: Path, **env: str
) -> Service:
    """A service that is ``python -m module args`` with this interpreter."""
    return Service(name, [sys.executable, "-m", module, *args], workdir, env)


def start_mlflow(workdir: Path, port: int) -> Service:
    """``mlflow server`` on SQLite with local artifacts (ready: see ``wait_mlflow``).

    Job execution is off: with it the server also starts about eight worker processes.
    """
    folder = workdir / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return python_module(
        "mlflow",
        "mlflow",
        [
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        workdir,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    ).start()


def start_prometheus(workdir: Path, port: int, config: str) -> Service:
    """Prometheus with ``config``; ready once ``/-/ready`` answers."""
    folder = workdir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "prometheus.yml"
    config_path.write_text(config)
    service = Service(
        "prometheus",
        [
            find_binary("prometheus"),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        workdir,
    ).start()
    return service.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"), timeout=30)


def start_haproxy(workdir: Path, runtime_port: int, config: str) -> Service:
    """HAProxy in the foreground (``-db``) with ``config``; ready when its runtime API is."""
    folder = workdir / "haproxy"
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "haproxy.cfg"
    config_path.write_text(config)
    service = Service(
        "haproxy", [find_binary("haproxy"), "-db", "-f", str(config_path)], workdir
    ).start()

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", runtime_port), timeout=1) as sock:
                sock.sendall(b"show info\n")
                return sock.recv(64).startswith(b"Name: HAProxy")
        except OSError:
            return False

    return service.wait_ready(answers, timeout=20)
