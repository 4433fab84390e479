"""HAProxy's runtime API goes away at the moment a regression is detected.

The daemon talks to HAProxy over its admin unix socket. The test moves the socket file
aside as soon as the canary takes traffic, so every runtime command fails while HAProxy
itself keeps proxying with the canary's weight. The regression must still be recorded at
once (``rolling_back``, with the breach as the reason), the weight-0 command retried every
tick, the daemon kept alive, and traffic taken off the canary as soon as the socket is
back: checked with ``get weight`` and with real requests through HAProxy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.proc import wait_until
from tests.integration.faults.conftest import FaultWorld

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_TICKS = 4  # ticks the rollback stays blocked before the socket comes back


def test_a_refused_rollback_is_recorded_at_once_and_retried_until_haproxy_answers(
    fault_world: Callable[..., FaultWorld],
) -> None:
    world: FaultWorld = fault_world(
        profiles={"2": {"error-rate": 0.6}},
        steps=[{"weight": 30, "min_duration": "5m"}],
        router="haproxy-unix",
    )
    assert world.haproxy is not None
    socket_path = Path(world.haproxy.runtime_unix.removeprefix("unix:"))
    hidden = socket_path.with_name("admin.sock.hidden")
    wait_until(
        lambda: world.haproxy_weights().get("canary", 0) > 0,
        timeout=60,
        what="the canary takes traffic",
        interval=0.02,
    )
    socket_path.rename(hidden)  # runtime commands now fail: no such socket
    gone_at = time.time()
    try:
        summary = world.wait_rollout(
            lambda s: s["phase"] == "rolling_back", timeout=60, what="the rollback is decided"
        )
        rollout = world.daemon.rollout(summary["id"])
        decided = next(h for h in rollout["history"] if h["phase"] == "rolling_back")
        # The regression was seen while the socket was gone, not before.
        assert decided["at"] >= gone_at, (decided, gone_at)
        assert "errors regressed" in rollout["reason"]
        assert rollout["breaches"][0]["metric"] == "errors"
        wait_until(
            lambda: len(world.events("rollout.rollback_blocked")) >= OUTAGE_TICKS,
            timeout=30,
            what="the weight-0 command retried every tick",
        )
        # HAProxy never heard of the rollback: the canary still gets real requests.
        assert world.haproxy_weights()["canary"] > 0
        assert world.served(1.0).get("2", 0) > 0
        blocked = world.events("rollout.rollback_blocked")
        assert all(e["rollout"] == summary["id"] for e in blocked)
        assert all(str(socket_path) in e["error"] for e in blocked), blocked[0]
        assert world.errors_counted("router") >= len(blocked)
        assert world.daemon.rollout(summary["id"])["phase"] == "rolling_back"
        assert not any("rolled back" in t.lower() for t in world.slack_texts())
        assert world.alive()
    finally:
        hidden.rename(socket_path)
    back_at = time.time()

    summary = world.wait_rollout(finished_rollback, timeout=30, what="rolled back")
    assert summary["phase"] == "rolled_back", summary
    rollout = world.daemon.rollout(summary["id"])
    done = next(h for h in rollout["history"] if h["phase"] == "rolled_back")
    assert done["at"] >= back_at
    assert done["at"] - back_at < 10  # the next tick or two, not a backoff of minutes
    assert world.haproxy_weights()["canary"] == 0
    served = world.served(2.0)
    assert served.get("2", 0) <= 5, served  # at most requests already in flight
    assert served.get("1", 0) > 100, served
    wait_until(
        lambda: any("rolled back" in t.lower() for t in world.slack_texts()),
        timeout=20,
        what="the rollback announced",
    )
    assert world.alive()


def finished_rollback(summary: dict[str, object]) -> bool:
    return summary["phase"] in ("rolled_back", "failed")
