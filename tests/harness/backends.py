"""A tiny HTTP backend that answers every request with its own name.

Router tests count which backend answered each request, through a real proxy, to measure the
split. The backend runs as its own process (``python -m tests.harness.backends NAME PORT``)
so it is a real server the proxy connects to, and is written on asyncio streams with
keep-alive so that it answers in well under a millisecond: thousands of requests per test
stay quick. asyncio sets TCP_NODELAY on its sockets, which avoids the 20-40 ms Nagle stall a
plain ``http.server`` backend shows behind a keep-alive proxy.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.proc import ManagedProcess, free_port, http_ok


async def _serve_connection(
    name: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    body = name + b"\n"
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip().lower()
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            close = headers.get("connection") == "close" or lines[0].endswith("HTTP/1.0")
            writer.write(
                b"HTTP/1.1 200 OK\r\n"
                b"Content-Type: text/plain\r\n"
                b"X-Backend: " + name + b"\r\n"
                b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\n"
                + (b"Connection: close\r\n" if close else b"")
                + b"\r\n"
                + body
            )
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _main(name: str, port: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _serve_connection(name.encode(), r, w), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


@dataclass(frozen=True)
class NameBackend:
    """A running backend: its name (what it answers) and where it listens."""

    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/"


def start_name_backend(name: str, workdir: Path) -> tuple[NameBackend, ManagedProcess]:
    """Start one backend process and wait until it answers."""
    port = free_port()
    process = ManagedProcess(
        name=f"backend-{name}",
        argv=[sys.executable, "-m", "tests.harness.backends", name, str(port)],
        workdir=workdir,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    ).start()
    backend = NameBackend(name=name, host="127.0.0.1", port=port)
    try:
        process.wait_ready(lambda: http_ok(backend.url), timeout=20)
    except BaseException:
        process.stop()
        raise
    return backend, process


@dataclass(frozen=True)
class BackendPair:
    """Two backends standing in for two model versions: ``blue`` and ``green``."""

    blue: NameBackend
    green: NameBackend


@pytest.fixture(scope="session")
def name_backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendPair]:
    """Two real backends for the whole session; proxies in front of them come and go."""
    workdir = tmp_path_factory.mktemp("backends")
    processes: list[ManagedProcess] = []
    try:
        blue, process = start_name_backend("blue", workdir)
        processes.append(process)
        green, process = start_name_backend("green", workdir)
        processes.append(process)
        yield BackendPair(blue=blue, green=green)
    finally:
        for process in processes:
            process.stop()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2])))
