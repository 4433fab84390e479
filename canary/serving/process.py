"""Versions served by a process canary starts: ``serving.start`` on a port it picks.

For example ``[mlflow, models, serve, -m, "models:/{model}/{version}", -p, "{port}",
--env-manager, local]``. Each server runs in its own process group (so stopping it also
stops the workers it forked), with its output in ``WORKDIR/MODEL-VERSION.log``; a server
that exits, or is not healthy within ``serving.ready_timeout``, is a ServingError carrying
the end of that log, which is usually the only place the real cause is written.

A small state file per server (pid, process start time, port) lets a restarted controller
find the servers it started instead of starting a second copy: ``start`` is idempotent
across restarts, like every other action of a tick. The start time, read from
``/proc/PID/stat``, tells a live server from a new process that reused its pid; where there
is no ``/proc``, servers are not adopted and a restart starts new ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from canary.core.policy import Serving
from canary.errors import ServingError
from canary.log import get_logger
from canary.serving.base import Backend, probe, render, render_address, template_values
from canary.traffic.base import Address

log = get_logger(__name__)

_TAIL_LINES = 25
_TAIL_CHARS = 3000


@dataclass
class _Server:
    backend: Backend
    pid: int
    started: str  # process start time from /proc, to recognise the same process later
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None  # None when adopted from a state file


class ProcessServing:
    """``ModelServing`` that starts one server process per version.

    ``env`` is added to the controller's environment for the servers (e.g.
    ``MLFLOW_TRACKING_URI``, which ``mlflow models serve`` needs to resolve ``models:/``).
    ``clock`` and ``sleep`` are injectable so the waiting logic can be tested without time.
    Not thread-safe: one tick drives it at a time.
    """

    def __init__(
        self,
        serving: Serving,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        poll_interval: float = 0.1,
        stop_timeout: float = 10.0,
        probe_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not serving.start:
            raise ServingError("serving.start is not set: use StaticServing")
        self._serving = serving
        self._argv = list(serving.start)
        self._workdir = workdir
        self._env = dict(env or {})
        self._poll = poll_interval
        self._stop_timeout = stop_timeout
        self._probe_timeout = probe_timeout
        self._clock = clock
        self._sleep = sleep
        self._servers: dict[tuple[str, str], _Server] = {}
        self._http = httpx.Client()
        workdir.mkdir(parents=True, exist_ok=True)

    # --- ModelServing ---------------------------------------------------------------------

    def start(self, model: str, version: str) -> Backend:
        template_values(model, version)  # refuse bad names before touching any file
        server = self._servers.get((model, version)) or self._adopt(model, version)
        if server is not None:
            self._servers[(model, version)] = server
            if self._wait_ready(server) is None:
                return server.backend
            # It died since it was started (or is dying right now): start a new one.
        server = self._spawn(model, version)
        self._servers[(model, version)] = server
        code = self._wait_ready(server)
        if code is not None:
            raise ServingError(
                f"server for {model} v{version} exited with code {code} before it was "
                f"healthy; end of {server.log_path.name}:\n" + _tail(server.log_path)
            )
        return server.backend

    def stop(self, model: str, version: str) -> None:
        template_values(model, version)
        server = self._servers.pop((model, version), None) or self._adopt(model, version)
        if server is not None:
            self._terminate(server)
            log.info("serving.stopped", model=model, version=version, pid=server.pid)
        self._state_path(model, version).unlink(missing_ok=True)

    def healthy(self, backend: Backend) -> bool:
        if self._http.is_closed:
            self._http = httpx.Client()
        return probe(backend, self._probe_timeout, self._http)

    def close(self) -> None:
        """Let go of the servers without stopping them: one of them may be the champion by
        now, serving production traffic through the proxy, and the canary's is adopted by
        the next controller from its state file. Servers are stopped when a rollout ends
        (the losing version's) or by ``stop_all``, never because the controller exits."""
        if self._servers:
            log.info(
                "serving.left_running",
                servers=[f"{m}/{v} pid {s.pid}" for (m, v), s in self._servers.items()],
            )
        self._servers.clear()
        self._http.close()

    def stop_all(self) -> None:
        """Stop every server this object started or adopted (tests, tear-downs)."""
        for model, version in list(self._servers):
            self.stop(model, version)
        self._http.close()

    # --- starting -------------------------------------------------------------------------

    def _spawn(self, model: str, version: str) -> _Server:
        port = self._free_port()
        values = template_values(model, version, port)
        argv = [render(arg, values) for arg in self._argv]
        address = render_address(self._serving.address, values)
        health = (
            render(self._serving.health, {**values, "address": str(address)})
            if self._serving.health
            else None
        )
        log_path = self._workdir / f"{model}-{version}.log"
        # The state file is written before the process exists, with an id the process
        # carries in its environment: a controller killed between the two leaves a server no
        # pid names, and the next one finds it by that id (``_find_spawned``) instead of
        # starting a second copy and leaving the first one running for ever.
        spawn_id = secrets.token_hex(8)
        env = {**os.environ, **self._env, SPAWN_ID_VARIABLE: spawn_id}
        self._write_intent(model, version, address, health, spawn_id)
        log.info("serving.starting", model=model, version=version, port=port, argv=argv)
        try:
            with log_path.open("ab") as out:
                out.write(f"--- canary: starting {argv!r}\n".encode())
                out.flush()
                popen = subprocess.Popen(
                    argv,
                    cwd=self._workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise ServingError(f"cannot start {argv[0]!r} for {model} v{version}: {exc}") from exc
        backend = Backend(model, version, address, health, popen.pid)
        server = _Server(backend, popen.pid, _start_time(popen.pid) or "", log_path, popen)
        self._write_state(server, spawn_id)
        return server

    def _wait_ready(self, server: _Server) -> int | None:
        """None once healthy; the exit code if it exits first (it is then cleaned up).

        Raises ServingError, after stopping it, if it is neither within ready_timeout.
        """
        backend = server.backend
        timeout = self._serving.ready_timeout
        deadline = self._clock() + timeout
        while True:
            code = self._exit_code(server)
            if code is not None:
                self._terminate(server)  # reap it, and kill whatever it forked
                self._forget(server)
                return code
            if self.healthy(backend):
                log.info(
                    "serving.ready",
                    model=backend.model,
                    version=backend.version,
                    address=str(backend.address),
                    pid=server.pid,
                )
                return None
            if self._clock() >= deadline:
                self._terminate(server)
                self._forget(server)
                raise ServingError(
                    f"server for {backend.model} v{backend.version} was not healthy after "
                    f"{timeout:g}s at {backend.health_url or backend.address}; "
                    f"end of {server.log_path.name}:\n" + _tail(server.log_path)
                )
            self._sleep(self._poll)

    def _free_port(self) -> int:
        """The first port of ``serving.ports`` that is neither ours nor bound by anyone."""
        ours = {s.backend.address.port for s in self._servers.values()}
        for port in range(self._serving.ports.first, self._serving.ports.last + 1):
            if port not in ours and _bindable(port):
                return port
        raise ServingError(
            f"no free port in {self._serving.ports.first}-{self._serving.ports.last}"
        )

    # --- stopping -------------------------------------------------------------------------

    def _exit_code(self, server: _Server) -> int | None:
        if server.popen is not None:
            return server.popen.poll()
        return None if _alive(server.pid, server.started) else -1

    def _terminate(self, server: _Server) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
        if server.popen is None and not _alive(server.pid, server.started):
            return  # an adopted pid that is gone (or reused): never signal a stranger
        if self._exit_code(server) is None:
            _signal_group(server.pid, signal.SIGTERM)
            deadline = self._clock() + self._stop_timeout
            while self._exit_code(server) is None and self._clock() < deadline:
                self._sleep(0.05)
        # Workers the server forked may outlive it; they are still in its group.
        _signal_group(server.pid, signal.SIGKILL)
        if server.popen is not None:
            try:
                server.popen.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("serving.stop_timeout", pid=server.pid)

    def _forget(self, server: _Server) -> None:
        key = (server.backend.model, server.backend.version)
        if self._servers.get(key) is server:
            del self._servers[key]
        self._state_path(*key).unlink(missing_ok=True)

    # --- state files ----------------------------------------------------------------------

    def _state_path(self, model: str, version: str) -> Path:
        return self._workdir / f"{model}-{version}.json"

    def _write_state(self, server: _Server, spawn_id: str | None = None) -> None:
        backend = server.backend
        state = {
            "pid": server.pid,
            "started": server.started,
            "address": str(backend.address),
            "health_url": backend.health_url,
            "spawn_id": spawn_id,
        }
        self._write_json(backend.model, backend.version, state)

    def _write_intent(
        self, model: str, version: str, address: Address, health: str | None, spawn_id: str
    ) -> None:
        state = {"pid": None, "address": str(address), "health_url": health, "spawn_id": spawn_id}
        self._write_json(model, version, state)

    def _write_json(self, model: str, version: str, state: Mapping[str, object]) -> None:
        path = self._state_path(model, version)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)

    def _adopt(self, model: str, version: str) -> _Server | None:
        """The server a previous controller started for this version, if it still runs."""
        path = self._state_path(model, version)
        try:
            state = json.loads(path.read_text())
            address = Address.parse(str(state["address"]))
            health = state.get("health_url")
            if state["pid"] is None:  # killed while starting it: look for it by its spawn_id
                found = _find_spawned(str(state["spawn_id"]))
                if found is None:
                    return None
                pid, started = found
            else:
                pid, started = int(state["pid"]), str(state["started"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("serving.state_ignored", path=path.name)
            return None
        if not started or not _alive(pid, started):
            return None
        backend = Backend(model, version, address, str(health) if health else None, pid)
        log.info("serving.adopted", model=model, version=version, pid=pid)
        return _Server(backend, pid, started, self._workdir / f"{model}-{version}.log")


SPAWN_ID_VARIABLE = "CANARY_SERVER_ID"
"""Set in a model server's environment: the spawn_id of its state file (see ``_spawn``)."""


def _find_spawned(spawn_id: str) -> tuple[int, str] | None:
    """The process started with ``spawn_id`` in its environment (pid and start time), if any."""
    needle = f"{SPAWN_ID_VARIABLE}={spawn_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pid = int(entry.name)
            started = _start_time(pid)
            if started is not None:
                return pid, started
    return None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None  # a zombie has exited already
    return fields[19]


def _alive(pid: int, started: str) -> bool:
    """The same process is still running: same pid, same start time, not a zombie."""
    return bool(started) and _start_time(pid) == started


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    text = "\n".join(lines[-_TAIL_LINES:])
    return text[-_TAIL_CHARS:]


def stop_recorded_servers(folder: Path, *, command_contains: bytes) -> list[int]:
    """Stop the servers whose state files are in ``folder`` (a controller's
    ``STATE_DIR/servers``) and whose command line contains ``command_contains``, with their
    process groups; returns their pids. For tear-downs: a controller leaves its servers
    running when it exits. The command-line check makes sure a pid reused by an unrelated
    process is never signalled."""
    stopped: list[int] = []
    for state in sorted(folder.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            recorded = json.loads(state.read_text())
            found = (
                _find_spawned(str(recorded["spawn_id"]))
                if recorded["pid"] is None
                else (int(recorded["pid"]), "")
            )
            if found is None:
                continue
            pid = found[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if command_contains in cmdline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)
                    stopped.append(pid)
    return stopped
