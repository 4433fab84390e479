from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.core.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    Phase,
    Rollout,
    can_transition,
    transition,
)
from canary.errors import TransitionError


def rollout(phase: Phase = Phase.PENDING) -> Rollout:
    return Rollout(id="r1", model="m", version="2", champion_version="1", phase=phase)


def test_happy_path_through_every_step():
    r = rollout()
    events = []
    steps: list[tuple[Phase, dict[str, Any]]] = [
        (Phase.GATING, {}),
        (Phase.STARTING, {}),
        (Phase.PROGRESSING, {"step": 0, "canary_weight": 1.0}),
        (Phase.PROGRESSING, {"step": 1, "canary_weight": 5.0}),
        (Phase.PROMOTING, {}),
        (Phase.PROMOTED, {"canary_weight": 100.0}),
    ]
    for to, changes in steps:
        r, record = transition(r, to, reason="test", at=1.0, **changes)
        events.append(record.event)
    assert r.phase is Phase.PROMOTED
    assert r.canary_weight == 100.0
    assert events == [None, None, "started", "advanced", None, "promoted"]


def test_pause_and_resume_are_announced():
    r = rollout(Phase.PROGRESSING)
    r, paused = transition(r, Phase.PAUSED, reason="operator", at=2.0)
    r, resumed = transition(r, Phase.PROGRESSING, reason="operator", at=3.0)
    assert (paused.event, resumed.event) == ("paused", "resumed")
    assert resumed.from_phase is Phase.PAUSED


def test_forbidden_move_raises_and_names_the_allowed_ones():
    with pytest.raises(TransitionError, match="allowed: aborted, failed, gating"):
        transition(rollout(), Phase.PROMOTED, reason="x", at=0.0)


def test_terminal_phases_have_no_way_out():
    for phase in TERMINAL:
        assert TRANSITIONS[phase] == frozenset()
        assert phase.terminal
        assert not phase.active


def test_every_phase_with_possible_canary_traffic_can_roll_back():
    for phase in (Phase.STARTING, Phase.PROGRESSING, Phase.PAUSED):
        assert can_transition(phase, Phase.ROLLING_BACK)


def test_every_non_terminal_phase_can_reach_a_terminal_one():
    for start in Phase:
        seen = {start}
        frontier = [start]
        while frontier:
            phase = frontier.pop()
            for nxt in TRANSITIONS[phase]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL, start


@given(st.lists(st.sampled_from(list(Phase)), max_size=30))
def test_random_walks_never_leave_the_table(targets):
    r = rollout()
    for target in targets:
        if can_transition(r.phase, target):
            new, record = transition(r, target, reason="walk", at=0.0)
            assert record.from_phase is r.phase
            assert record.to_phase is target
            r = new
        else:
            with pytest.raises(TransitionError):
                transition(r, target, reason="walk", at=0.0)
    assert r.phase in Phase
