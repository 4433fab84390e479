"""``nginx -t`` starts failing in the middle of a daemon rollout.

The test drops an invalid file into the ``conf.d/`` folder nginx includes, right after the
first step begins, so the daemon's next weight change fails at ``nginx -t``. nginx itself
keeps running on the configuration it last loaded. The router must put the previous
upstream file back, the running nginx must keep answering with the first step's split
(counted from real requests), the failure must be logged, counted and shown on the rollout,
the rollout must not pass a step whose weights nginx never took, and once the file is
fixed it must carry on to promotion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from canary.traffic.nginx import parse_upstream
from tests.harness.proc import wait_until
from tests.integration.faults.conftest import FaultWorld, finished

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEPS = [{"weight": 20, "min_duration": "3s"}, {"weight": 60, "min_duration": "3s"}]


def canary_share(served: dict[str, int]) -> float:
    total = served.get("1", 0) + served.get("2", 0)
    assert total > 50, served
    return served.get("2", 0) / total


def test_a_config_that_fails_nginx_t_keeps_the_previous_split_until_fixed(
    fault_world: Callable[..., FaultWorld],
) -> None:
    world: FaultWorld = fault_world(profiles={"2": {}}, steps=STEPS, router="nginx", fast=True)
    assert world.nginx is not None
    summary = world.wait_rollout(
        lambda s: s["phase"] == "progressing", timeout=60, what="the first step"
    )
    broken = world.nginx.conf_d / "broken.conf"
    broken.write_text("this_is_not_an_nginx_directive on;\n")

    failed = wait_until_event(world, "router.reconcile_failed", timeout=30)
    # The file may land between the router's `nginx -t` and its reload: either refuses it.
    assert "nginx -t failed" in failed["error"] or "nginx -s reload failed" in failed["error"]
    assert "this_is_not_an_nginx_directive" in failed["error"]
    assert "this_is_not_an_nginx_directive" in failed["error"]
    # The upstream file is the one nginx last accepted: the first step's 20 %.
    upstream = parse_upstream(world.nginx.include_file.read_text(), "upstream.conf")
    assert upstream.weights().canary == pytest.approx(20)
    # And nginx still serves it: about a fifth of real requests reach the canary.
    assert 0.08 <= canary_share(world.served(2.0)) <= 0.35
    assert world.errors_counted("router") >= 1
    rollout = world.daemon.rollout(summary["id"])
    assert "this_is_not_an_nginx_directive" in (rollout["router_error"] or ""), rollout
    # The second step is not passed while nginx never took its weights (3 s steps).
    time.sleep(4)
    rollout = world.daemon.rollout(summary["id"])
    assert rollout["phase"] == "progressing", rollout
    assert rollout["step"] == 1
    assert world.alive()

    broken.unlink()
    fixed_at = time.time()
    wait_until(
        lambda: world.daemon.rollout(summary["id"])["router_error"] is None,
        timeout=20,
        what="the weights applied once nginx -t passes",
    )
    assert 0.45 <= canary_share(world.served(1.5)) <= 0.75
    summary = world.wait_rollout(finished, timeout=60, what="the rollout ends")
    assert summary["phase"] == "promoted", summary
    rollout = world.daemon.rollout(summary["id"])
    promoting = next(h for h in rollout["history"] if h["phase"] == "promoting")
    # The second step lasted its 3 s at 60 %, counted from when nginx took it.
    assert promoting["at"] - fixed_at >= 3.0
    weights = [h["canary_weight"] for h in rollout["history"] if h["phase"] == "progressing"]
    assert weights == [20, 60]
    served = world.served(1.5)
    assert served.get("1", 0) <= 5, served
    assert served.get("2", 0) > 50, served


def wait_until_event(world: FaultWorld, name: str, timeout: float) -> dict[str, Any]:
    wait_until(lambda: bool(world.events(name)), timeout=timeout, what=f"event {name}")
    return world.events(name)[0]
