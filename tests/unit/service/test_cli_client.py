"""`canary status|pause|resume|promote|abort` against a live API server (uvicorn on loopback)."""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn
from click.testing import CliRunner
from pydantic import SecretStr

from canary.cli import main
from canary.service.api import create_app
from tests.harness.proc import free_port
from tests.unit.service.test_controller import World

TOKEN = "cli-token-abcdef0123456789"


@pytest.fixture
def served(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = world.start()
    for _ in range(3):
        world.controller.tick(rollout_id)
        world.clock.advance(15)
    app = create_app(
        world.controller,
        token=SecretStr(TOKEN),
        metrics_registry=world.ctx.telemetry.registry,
        ready=lambda: (True, "ready"),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield world, rollout_id, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_status_lists_and_shows_a_rollout(served):
    _world, rollout_id, url = served
    runner = CliRunner()
    listed = runner.invoke(main, ["status", "--url", url])
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()[:2]
    assert header.split() == [
        "ROLLOUT",
        "MODEL",
        "VERSION",
        "PHASE",
        "STEP",
        "CANARY",
        "E-VALUE",
        "UPDATED",
    ]
    assert row.startswith(rollout_id)
    assert "progressing" in row
    assert "1/3" in row
    assert "5%" in row
    one = runner.invoke(main, ["status", rollout_id, "--url", url])
    assert one.exit_code == 0, one.output
    assert "v2 (champion v1)" in one.output
    assert "rollback at e-value >= 20" in one.output
    assert "errors" in one.output
    assert "progressing" in one.output


def test_commands_need_the_token_and_change_the_phase(served, monkeypatch):
    world, rollout_id, url = served
    runner = CliRunner()
    monkeypatch.delenv("CANARY_API_TOKEN", raising=False)
    refused = runner.invoke(main, ["pause", rollout_id, "--url", url])
    assert refused.exit_code == 2
    assert "CANARY_API_TOKEN" in refused.output
    monkeypatch.setenv("CANARY_API_TOKEN", "wrong")
    wrong = runner.invoke(main, ["pause", rollout_id, "--url", url])
    assert wrong.exit_code == 1
    assert "401" in wrong.output
    monkeypatch.setenv("CANARY_API_TOKEN", TOKEN)
    paused = runner.invoke(main, ["pause", rollout_id, "--url", url])
    assert paused.exit_code == 0, paused.output
    assert "paused" in paused.output
    again = runner.invoke(main, ["pause", rollout_id, "--url", url])
    assert again.exit_code == 1
    assert "409" in again.output
    aborted = runner.invoke(main, ["abort", rollout_id, "--url", url])
    assert aborted.exit_code == 0
    assert "aborted (canary 0%)" in aborted.output
    assert world.router.weights.canary == 0.0


def test_an_unreachable_daemon_is_a_clear_error():
    result = CliRunner().invoke(main, ["status", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 2
    assert "cannot reach the daemon" in result.output
