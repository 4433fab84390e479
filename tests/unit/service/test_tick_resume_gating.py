"""A daemon killed while it creates a rollout: the next tick finishes the offline gate.

The controller saves a new rollout as pending, then moves it to gating and on to starting or
rejected, in separate writes. A SIGKILL between them (seen in ``benchmarks.kill_runs``) used
to leave it in a phase no tick moved, and kept every later version of the model waiting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from canary.core.lifecycle import Phase
from canary.service.tick import commit
from canary.store.base import StoredRollout
from tests.unit.service.fakes import FakeRegistry
from tests.unit.service.test_controller import World


def killed_while_creating(world: World, version: str, last_phase: Phase) -> str:
    """The rollout of ``version`` as a daemon killed right after saving ``last_phase`` left it."""
    (loaded,) = world.policies.all()
    candidate = world.registry.details("credit-risk", version)
    rollout = world.controller._new_rollout(loaded, candidate, "1")
    world.store.save(rollout, expected_revision=0)
    if last_phase is Phase.GATING:
        commit(world.ctx, StoredRollout(rollout, 1), Phase.GATING, reason="checking the gate")
    return rollout.id


@pytest.mark.parametrize("last_phase", [Phase.PENDING, Phase.GATING])
def test_an_admitted_version_left_before_starting_is_started_and_promoted(
    tmp_path: Path, last_phase: Phase
) -> None:
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = killed_while_creating(world, "2", last_phase)
    report = world.controller.tick(rollout_id)
    assert report.error is None
    assert report.rollout is not None
    assert report.rollout.phase is Phase.PROGRESSING
    assert world.run(rollout_id).phase is Phase.PROMOTED
    phases = [t.to_phase for t in world.store.transitions(rollout_id)]
    assert phases[:3] == [Phase.GATING, Phase.STARTING, Phase.PROGRESSING]
    assert phases.count(Phase.GATING) == 1
    events = [n.entry.event for n in world.store.notifications(rollout_id=rollout_id)]
    assert events == ["started", "advanced", "advanced", "promoted"]


def test_a_version_the_gate_turned_down_is_rejected_without_traffic(tmp_path: Path) -> None:
    registry = FakeRegistry(versions={"1": {"accuracy": 0.9}, "2": {"accuracy": 0.5}})
    world = World(tmp_path, {"1": 0.01, "2": 0.01}, registry=registry)
    rollout_id = killed_while_creating(world, "2", Phase.GATING)
    report = world.controller.tick(rollout_id)
    assert report.rollout is not None
    assert report.rollout.phase is Phase.REJECTED
    assert "accuracy" in report.rollout.reason
    assert world.serving.started == []
    assert world.router.applied == []


def test_the_gate_waits_for_the_registry(tmp_path: Path) -> None:
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = killed_while_creating(world, "2", Phase.GATING)
    world.registry.down = True
    report = world.controller.tick(rollout_id)
    assert report.rollout is not None
    assert report.rollout.phase is Phase.GATING  # kept, not guessed
    world.registry.down = False
    report = world.controller.tick(rollout_id)
    assert report.rollout is not None
    assert report.rollout.phase is Phase.PROGRESSING
