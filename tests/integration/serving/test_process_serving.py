"""Starting real model servers from an argv template, waiting for health, stopping them."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from canary.core.policy import PortRange, Serving
from canary.errors import ServingError
from canary.serving.process import ProcessServing, _start_time
from canary.serving.static import StaticServing
from tests.harness.proc import ManagedProcess, free_port, http_ok

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
ENV = {"PYTHONPATH": str(REPO_ROOT)}

SIM_SERVER = [
    sys.executable,
    "-m",
    "canary.sim.model_server",
    "--port",
    "{port}",
    "--model",
    "{model}",
    "--version",
    "{version}",
]


def port_range() -> PortRange:
    first = free_port()
    return PortRange(first=first, last=min(first + 50, 65535))


def sim_serving(tmp_path: Path, **changes) -> ProcessServing:
    serving = Serving(
        address="127.0.0.1:{port}",
        start=SIM_SERVER,
        health="http://{address}/health",
        ports=port_range(),
        ready_timeout=20,
    )
    return ProcessServing(serving.model_copy(update=changes), tmp_path, env=ENV)


def gone(pid: int) -> bool:
    return _start_time(pid) is None


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_version_is_served_on_a_port_from_the_range_and_stopped(tmp_path: Path) -> None:
    serving = sim_serving(tmp_path)
    try:
        backend = serving.start("credit-risk", "4")
        assert backend.pid is not None
        assert backend.address.host == "127.0.0.1"
        assert serving._serving.ports.first <= backend.address.port <= serving._serving.ports.last
        assert backend.health_url == f"http://{backend.address}/health"
        info = httpx.get(f"http://{backend.address}/", timeout=5).json()
        assert (info["model"], info["version"]) == ("credit-risk", "4")
        assert serving.healthy(backend)

        # Idempotent: the same server, not a second one.
        assert serving.start("credit-risk", "4") == backend

        other = serving.start("credit-risk", "5")
        assert other.address.port != backend.address.port
        assert httpx.get(f"http://{other.address}/", timeout=5).json()["version"] == "5"
    finally:
        serving.stop_all()
    assert gone(backend.pid)
    assert not serving.healthy(backend)
    assert list(tmp_path.glob("*.json")) == []


def test_stop_is_idempotent(tmp_path: Path) -> None:
    serving = sim_serving(tmp_path)
    backend = serving.start("m", "1")
    serving.stop("m", "1")
    serving.stop("m", "1")
    serving.stop("m", "2")  # never started
    assert backend.pid is not None
    assert gone(backend.pid)


def test_a_restarted_controller_adopts_the_running_server(tmp_path: Path) -> None:
    first = sim_serving(tmp_path)
    backend = first.start("m", "3")
    # A new controller on the same working folder: it finds the server instead of
    # starting a second one, and can stop it.
    second = sim_serving(tmp_path)
    try:
        adopted = second.start("m", "3")
        assert (adopted.pid, adopted.address) == (backend.pid, backend.address)
        second.stop("m", "3")
        assert backend.pid is not None
        assert wait_gone(backend.pid)
    finally:
        first.stop_all()
        second.stop_all()


def test_a_controller_that_exits_leaves_its_servers_serving(tmp_path: Path) -> None:
    """close() is what a controller does when it exits (SIGTERM included): the version it
    promoted is the champion now, behind the proxy, so its server must keep answering; the
    next controller adopts it."""
    first = sim_serving(tmp_path)
    backend = first.start("m", "4")
    first.close()
    second = sim_serving(tmp_path)
    try:
        assert backend.pid is not None
        assert not gone(backend.pid)
        assert second.healthy(backend)
        assert second.start("m", "4").pid == backend.pid
    finally:
        second.stop_all()
    assert wait_gone(backend.pid)


def test_a_server_whose_pid_was_never_recorded_is_found_by_its_id(tmp_path: Path) -> None:
    """A controller SIGKILLed between starting a server and recording its pid leaves only
    the state file it wrote before starting it: the next controller finds the server by the
    id in its environment instead of starting a second one beside it."""
    first = sim_serving(tmp_path)
    backend = first.start("m", "5")
    state_file = tmp_path / "m-5.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "pid": None, "started": None}))
    second = sim_serving(tmp_path)
    try:
        assert second.start("m", "5").pid == backend.pid
    finally:
        second.stop_all()
    assert backend.pid is not None
    assert wait_gone(backend.pid)


def test_a_stale_state_file_does_not_adopt_a_stranger(tmp_path: Path) -> None:
    serving = sim_serving(tmp_path)
    stale = '{"pid": %d, "started": "1", "address": "127.0.0.1:1", "health_url": null}'
    (tmp_path / "m-8.json").write_text(stale % os.getpid())
    try:
        backend = serving.start("m", "8")
        assert backend.pid != os.getpid()
        assert backend.address.port != 1
    finally:
        serving.stop_all()


def test_stopping_kills_the_whole_process_group(tmp_path: Path) -> None:
    # The server forks a helper (as gunicorn and uvicorn workers do) and writes its pid.
    script = (
        "import subprocess, sys, http.server, pathlib; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "pathlib.Path('child.pid').write_text(str(child.pid)); "
        "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])),"
        " http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    serving = ProcessServing(
        Serving(
            address="127.0.0.1:{port}",
            start=[sys.executable, "-c", script, "{port}"],
            health="http://{address}/",
            ports=port_range(),
            ready_timeout=20,
        ),
        tmp_path,
    )
    backend = serving.start("m", "1")
    child = int((tmp_path / "child.pid").read_text())
    assert not gone(child)
    serving.stop("m", "1")
    assert backend.pid is not None
    assert gone(backend.pid)
    assert wait_gone(child)


def test_a_command_that_exits_at_once_gives_its_output(tmp_path: Path) -> None:
    serving = sim_serving(
        tmp_path,
        start=[
            sys.executable,
            "-c",
            "import sys; print('cannot load models:/' + sys.argv[1]); sys.exit(3)",
            "{model}/{version}",
        ],
    )
    started = time.monotonic()
    with pytest.raises(ServingError) as caught:
        serving.start("credit-risk", "9")
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "exited with code 3 before it was healthy" in message
    assert "cannot load models:/credit-risk/9" in message
    assert list(tmp_path.glob("*.json")) == []


def test_a_server_that_never_becomes_healthy_is_stopped_after_the_timeout(
    tmp_path: Path,
) -> None:
    serving = sim_serving(
        tmp_path,
        start=[
            sys.executable,
            "-c",
            "import os, time; open('pid', 'w').write(str(os.getpid())); "
            "print('loading a very large model', flush=True); time.sleep(120)",
        ],
        ready_timeout=1.0,
    )
    started = time.monotonic()
    with pytest.raises(ServingError) as caught:
        serving.start("m", "2")
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 8.0
    assert "not healthy after 1s" in str(caught.value)
    assert "loading a very large model" in str(caught.value)
    assert gone(int((tmp_path / "pid").read_text()))


def test_a_missing_binary_is_a_serving_error(tmp_path: Path) -> None:
    serving = sim_serving(tmp_path, start=[str(tmp_path / "no-such-server"), "{port}"])
    with pytest.raises(ServingError, match="cannot start"):
        serving.start("m", "1")


def test_a_static_address_points_at_a_server_someone_else_runs(tmp_path: Path) -> None:
    port = free_port()
    process = ManagedProcess(
        "sim",
        [
            sys.executable,
            "-m",
            "canary.sim.model_server",
            "--port",
            str(port),
            "--model",
            "credit-risk",
            "--version",
            "2",
        ],
        tmp_path,
        env=ENV,
    )
    serving = StaticServing(Serving(address=f"127.0.0.1:{port}", health="http://{address}/health"))
    backend = serving.start("credit-risk", "2")
    assert str(backend.address) == f"127.0.0.1:{port}"
    assert not serving.healthy(backend)
    process.start()
    try:
        process.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout=20)
        assert serving.healthy(backend)
    finally:
        process.stop()
    assert not serving.healthy(backend)


def test_a_server_that_died_is_started_again(tmp_path: Path) -> None:
    serving = sim_serving(tmp_path)
    try:
        backend = serving.start("m", "6")
        for _ in range(3):
            # No waiting: the killed server may still look alive for a moment (its
            # threads are exiting), and start() must replace it either way.
            assert backend.pid is not None
            os.killpg(backend.pid, signal.SIGKILL)
            again = serving.start("m", "6")
            assert again.pid != backend.pid
            assert serving.healthy(again)
            assert wait_gone(backend.pid)
            backend = again
    finally:
        serving.stop_all()
