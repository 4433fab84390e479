"""The daemon's real HTTP API over a store holding rollouts with history, on a loopback port.

The rollouts are made by the real controller, store and analysis, driven by the fakes of
our own backend interfaces from the controller's unit tests (``World``) on an injected
clock: a rolled-back rollout (its error rate tripled, with a breach) and a healthy one at
its last step, in a few hundred milliseconds. The API is the one ``canary run`` serves
(``create_app`` plus the status page) under a real uvicorn server in a thread, so a browser,
Prometheus or a health-check command can talk to it over TCP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from pydantic import SecretStr

from canary.core.lifecycle import Phase
from canary.service.api import create_app
from canary.service.status_page import add_status_page
from tests.harness.proc import free_port
from tests.unit.service.test_controller import World

TOKEN = "status-page-token-0123456789"


@dataclass
class ServedWorld:
    world: World
    url: str
    port: int
    rolled_back: str  # id of the rollout that was rolled back
    progressing: str  # id of the rollout still running, at its last step


def build_world(tmp_path: Path) -> tuple[World, str, str]:
    """A store with one rolled-back rollout (v2) and one progressing at its last step (v3)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    world = World(tmp_path, {"1": 0.01, "2": 0.03, "3": 0.01}, seed=4)
    bad = world.start()
    assert world.run(bad).phase is Phase.ROLLED_BACK
    world.registry.versions["3"] = {"accuracy": 0.9}
    good = world.start()
    world.run(good, stop=lambda r: r.step == 2)
    for _ in range(10):  # some time at the last step, so the charts show it held
        world.clock.advance(15)
        assert world.controller.tick(good).rollout.phase is Phase.PROGRESSING
    return world, bad, good


@contextmanager
def serve_world(tmp_path: Path) -> Iterator[ServedWorld]:
    """Build the world in ``tmp_path`` and serve its API until the block ends."""
    world, bad, good = build_world(tmp_path)
    app = create_app(
        world.controller,
        token=SecretStr(TOKEN),
        metrics_registry=world.ctx.telemetry.registry,
        ready=lambda: (True, "ready"),
        extra_routes=add_status_page(world.controller),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, name="world-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start on 127.0.0.1:{port}")
        time.sleep(0.01)
    try:
        yield ServedWorld(world, f"http://127.0.0.1:{port}", port, bad, good)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        world.store.close()
