"""The MLflow server stops in the middle of a rollout, and the rollout ends while it is down.

The test owns its MLflow server (same port, same database across restarts) so it can stop
it for real, just after the daemon has marked the version ``in_progress``, so the rollout's
end is always decided while MLflow is down:

- MLflow stopped (connections refused): a worse canary is rolled back at once anyway
  (traffic never waits for the registry), and its tags are written when MLflow is started
  again, exactly once, by ``flush_registry_outcomes``; meanwhile the version is not
  picked up for a second rollout;
- MLflow hung (its processes SIGSTOPped, so requests time out): a good canary's promotion
  holds in ``promoting`` (traffic already on it, the alias not moved) and completes, with
  one write of the alias and tags, when MLflow answers again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness.proc import wait_until
from tests.integration.faults.conftest import FaultWorld, StoppableMlflow, finished

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOWN_TICKS = 3  # polls that find MLflow down before it is started again


def stop_mlflow_when_marked(world: FaultWorld, mlflow: StoppableMlflow, version: str) -> float:
    """Stop MLflow as soon as the rollout of ``version`` is created (its ``in_progress`` tag
    written), with the daemon frozen meanwhile; returns when MLflow was down."""
    wait_until(
        lambda: bool(world.events("rollout.created", version=version)),
        timeout=60,
        what=f"the rollout of version {version} created",
    )
    with world.daemon_frozen():
        mlflow.stop()
        return time.time()


def test_mlflow_down_at_the_end_of_a_rollout_defers_the_registry_write_once(
    fault_world: Callable[..., FaultWorld], stoppable_mlflow: StoppableMlflow
) -> None:
    assert stoppable_mlflow.server is not None
    world = fault_world(
        profiles={"2": {"error-rate": 0.5}, "3": {}},
        steps=[{"weight": 40, "min_duration": "2s"}],
        mlflow=stoppable_mlflow.server,
        fast=True,
    )

    # --- a rollback while MLflow is down ------------------------------------------------
    down_at = stop_mlflow_when_marked(world, stoppable_mlflow, "2")
    summary = world.wait_rollout(finished, timeout=60, what="the bad canary rolled back")
    assert summary["phase"] == "rolled_back", summary
    rolled_id = summary["id"]
    rollout = world.daemon.rollout(rolled_id)
    done = next(h for h in rollout["history"] if h["phase"] == "rolled_back")
    assert done["at"] > down_at
    assert world.haproxy_weights()["canary"] == 0  # traffic did not wait for the registry
    assert len(world.events("rollout.registry_pending", rollout=rolled_id)) == 1
    wait_until(
        lambda: len(world.events("registry.still_pending", rollout=rolled_id)) >= DOWN_TICKS,
        timeout=30,
        what="the pending registry write retried on each poll",
    )
    # No new candidate is looked for while the version's outcome is unwritten.
    assert world.events("registry.poll_deferred", model=world.model)
    wait_until(
        lambda: any("rolled back" in t.lower() for t in world.slack_texts()),
        timeout=20,
        what="the rollback announced while MLflow is down",
    )
    assert world.alive()
    assert world.errors_counted("registry") >= 1

    stoppable_mlflow.start()
    wait_until(
        lambda: bool(world.events("registry.outcome_written", rollout=rolled_id)),
        timeout=30,
        what="the pending outcome written once MLflow is back",
    )
    tags = world.version_tags(world.versions["2"])
    assert tags["canary.status"] == "rolled_back"
    assert tags["canary.rollout_id"] == rolled_id
    assert "errors regressed" in tags["canary.reason"]
    assert "challenger" not in world.aliases()
    assert world.aliases()["champion"] == world.versions["1"]
    time.sleep(3)  # three more polls: nothing is written again, nothing starts again
    assert len(world.events("registry.outcome_written", rollout=rolled_id)) == 1
    writes = world.events("registry.outcome_recorded", version="2", status="rolled_back")
    assert len(writes) == 1, writes
    assert [s["id"] for s in world.daemon.rollouts() if s["model"] == world.model] == [rolled_id]

    # --- a promotion while MLflow hangs -------------------------------------------------
    world.versions["3"] = world.mlflow.register_version(
        world.model, {"accuracy": 0.9}, aliases=["challenger"]
    )
    wait_until(
        lambda: bool(world.events("rollout.created", version="3")),
        timeout=60,
        what="the rollout of version 3 created",
    )
    stoppable_mlflow.freeze()  # requests now time out instead of being refused
    hung_at = time.time()
    try:
        promoting = world.wait_rollout(
            lambda s: s["version"] == "3" and s["phase"] == "promoting",
            timeout=60,
            what="the good canary decided for promotion",
        )
        wait_until(
            lambda: len(promote_failures(world)) >= DOWN_TICKS,
            timeout=30,
            what="the promotion retried on each tick",
        )
        summary = world.daemon.rollout(promoting["id"])
        assert summary["phase"] == "promoting", summary  # holds: no alias move, no crash
        assert "MLflow" in promote_failures(world)[-1]["error"]
        assert world.haproxy_weights()["canary"] > 0  # the new version already takes traffic
        assert world.alive()
    finally:
        stoppable_mlflow.thaw()

    summary = world.wait_rollout(
        lambda s: s["version"] == "3" and finished(s), timeout=30, what="promoted"
    )
    assert summary["phase"] == "promoted", summary
    promoted = next(
        h for h in world.daemon.rollout(summary["id"])["history"] if h["phase"] == "promoted"
    )
    assert promoted["at"] > hung_at
    assert world.aliases()["champion"] == world.versions["3"]
    tags = world.version_tags(world.versions["3"])
    assert tags["canary.status"] == "promoted"
    assert tags["canary.previous_champion"] == world.versions["1"]
    time.sleep(2)
    writes = world.events("registry.outcome_recorded", version="3", status="promoted")
    assert len(writes) == 1, writes
    assert "alias champion -> 3" in writes[0]["changes"]
    # The earlier rollback's tags were not touched again.
    assert len(world.events("registry.outcome_recorded", version="2", status="rolled_back")) == 1


def promote_failures(world: FaultWorld) -> list[dict[str, Any]]:
    return world.events("rollout.backend_failed", action="promote")
