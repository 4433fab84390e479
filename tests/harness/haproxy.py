"""A real HAProxy on free loopback ports, with its runtime API on TCP and on a unix socket.

``haproxy_factory`` starts one per call (``-db``: foreground, no daemon) in its own folder and
stops them all after the test; ``haproxy`` is the common case: backend ``app`` whose
``champion`` server is the blue name backend and with no canary server yet, so tests go
through the router's own ``set_backend`` to add one.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness.proc import ManagedProcess, free_port, require_binary

if TYPE_CHECKING:
    from tests.harness.backends import BackendPair

# The blue and green name backends the default fixture puts behind the proxy.
pytest_plugins = ["tests.harness.backends"]


@dataclass(frozen=True)
class HAProxyInstance:
    url: str
    runtime_tcp: str
    runtime_unix: str
    backend: str
    workdir: Path
    process: ManagedProcess


def runtime_command(instance: HAProxyInstance, command: str) -> str:
    """Send one command straight to the runtime API (for assertions, not through a router)."""
    host, port = instance.runtime_tcp.removeprefix("tcp:").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def _config(
    *, port: int, api_port: int, sock: Path, backend: str, balance: str, servers: Mapping[str, str]
) -> str:
    server_lines = "\n".join(
        f"  server {name} {address} weight 1" for name, address in servers.items()
    )
    return f"""\
global
  stats socket ipv4@127.0.0.1:{api_port} level admin
  stats socket {sock} mode 600 level admin
  maxconn 2048

defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s

frontend main
  bind 127.0.0.1:{port}
  default_backend {backend}

backend {backend}
  balance {balance}
{server_lines}
"""


def start_haproxy(
    workdir: Path,
    servers: Mapping[str, str],
    *,
    backend: str = "app",
    balance: str = "roundrobin",
) -> HAProxyInstance:
    """Start HAProxy with ``servers`` (name → host:port) in ``backend``; wait for its API."""
    binary = require_binary("haproxy")
    port, api_port = free_port(), free_port()
    sock = workdir / "admin.sock"
    config = workdir / "haproxy.cfg"
    config.write_text(
        _config(
            port=port,
            api_port=api_port,
            sock=sock,
            backend=backend,
            balance=balance,
            servers=servers,
        )
    )
    process = ManagedProcess(
        name="haproxy", argv=[binary, "-db", "-f", str(config)], workdir=workdir
    )
    process.start()
    instance = HAProxyInstance(
        url=f"http://127.0.0.1:{port}/",
        runtime_tcp=f"tcp:127.0.0.1:{api_port}",
        runtime_unix=f"unix:{sock}",
        backend=backend,
        workdir=workdir,
        process=process,
    )
    try:
        process.wait_ready(
            lambda: (
                runtime_command(instance, "show info").startswith("Name: HAProxy") and sock.exists()
            ),
            timeout=20,
        )
    except BaseException:
        process.stop()
        raise
    return instance


@pytest.fixture
def haproxy_factory() -> Iterator[Callable[..., HAProxyInstance]]:
    """Start HAProxy instances on demand; every one is stopped after the test."""
    started: list[HAProxyInstance] = []
    folders: list[Path] = []

    def start(servers: Mapping[str, str], **options: str) -> HAProxyInstance:
        # A short folder of its own: unix socket paths are limited to 107 bytes.
        workdir = Path(tempfile.mkdtemp(prefix="canary-haproxy-"))
        folders.append(workdir)
        instance = start_haproxy(workdir, servers, **options)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.process.stop()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def haproxy(
    haproxy_factory: Callable[..., HAProxyInstance], name_backends: BackendPair
) -> HAProxyInstance:
    """HAProxy with backend ``app``: ``champion`` → blue, no canary server yet."""
    return haproxy_factory({"champion": name_backends.blue.address})
