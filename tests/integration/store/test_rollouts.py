"""Rollouts, their history and the two rules that make several controllers safe."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from canary.core.lifecycle import Phase, transition
from canary.errors import StoreError
from canary.store.base import ActiveRolloutError, OutboxEntry, StaleWriteError
from canary.store.sql import SqlStore, rollouts
from tests.integration.store.records import full_rollout, new_rollout

pytestmark = pytest.mark.integration


def test_every_field_of_a_rollout_round_trips(store: SqlStore) -> None:
    rollout = full_rollout()
    assert store.save(rollout, expected_revision=0) == 1
    stored = store.get(rollout.id)
    assert stored is not None
    assert stored.revision == 1
    assert stored.rollout == rollout
    assert isinstance(stored.rollout.phase, Phase)
    assert isinstance(stored.rollout.rollback_to, Phase)


def test_none_fields_round_trip_as_none(store: SqlStore) -> None:
    rollout = new_rollout().replace(champion_version=None)
    store.save(rollout, expected_revision=0)
    stored = store.get(rollout.id)
    assert stored is not None
    assert stored.rollout == rollout
    assert stored.rollout.step_started_at is None
    assert stored.rollout.rollback_to is None


def test_unknown_rollout_reads_as_none(store: SqlStore) -> None:
    assert store.get("nope") is None
    assert store.transitions("nope") == []


def test_transitions_are_kept_in_order_with_every_field(store: SqlStore) -> None:
    rollout = new_rollout()
    revision = store.save(rollout, expected_revision=0)
    expected = []
    moves: list[tuple[Phase, dict[str, Any]]] = [
        (Phase.GATING, {}),
        (Phase.STARTING, {}),
        (Phase.PROGRESSING, {"step": 1, "canary_weight": 1.0}),
        (Phase.PROGRESSING, {"step": 2, "canary_weight": 5.0}),
        (Phase.PAUSED, {}),
        (Phase.PROGRESSING, {}),
        (Phase.ROLLING_BACK, {"rollback_to": Phase.ROLLED_BACK}),
        (Phase.ROLLED_BACK, {"canary_weight": 0.0}),
    ]
    for i, (phase, changes) in enumerate(moves):
        rollout, record = transition(
            rollout,
            phase,
            reason=f"move {i}",
            at=1000.0 + i,
            detail={"i": i, "why": ["a", "b"]},
            **changes,
        )
        revision = store.save(rollout, expected_revision=revision, transition=record)
        expected.append(record)
    assert revision == len(moves) + 1
    assert store.transitions(rollout.id) == expected
    events = [t.event for t in store.transitions(rollout.id)]
    assert events == [None, None, "started", "advanced", "paused", "resumed", None, "rolled_back"]
    stored = store.get(rollout.id)
    assert stored is not None
    assert stored.rollout == rollout


def test_a_stale_revision_is_refused_and_nothing_is_written(
    open_store: Callable[[], SqlStore],
) -> None:
    one, two = open_store(), open_store()  # two controllers on one database
    rollout = new_rollout()
    one.save(rollout, expected_revision=0)
    seen_by_one = one.get(rollout.id)
    seen_by_two = two.get(rollout.id)
    assert seen_by_one is not None
    assert seen_by_two is not None

    advanced, record = transition(seen_by_one.rollout, Phase.GATING, reason="one", at=2.0)
    assert one.save(advanced, expected_revision=seen_by_one.revision, transition=record) == 2

    aborted, record = transition(seen_by_two.rollout, Phase.ABORTED, reason="two", at=3.0)
    entry = OutboxEntry("r-1/aborted/0/2", "webhook:HOOK", "r-1", "aborted", {"x": 1})
    with pytest.raises(StaleWriteError, match="expected revision 1, found 2"):
        two.save(
            aborted,
            expected_revision=seen_by_two.revision,
            transition=record,
            notifications=[entry],
        )
    stored = two.get(rollout.id)
    assert stored is not None
    assert (stored.rollout.phase, stored.revision) == (Phase.GATING, 2)
    assert [t.reason for t in two.transitions(rollout.id)] == ["one"]
    assert two.notifications() == []


def test_creating_a_rollout_that_exists_is_a_stale_write(store: SqlStore) -> None:
    store.save(new_rollout(), expected_revision=0)
    with pytest.raises(StaleWriteError, match="already exists"):
        store.save(new_rollout().replace(version="8"), expected_revision=0)
    with pytest.raises(StaleWriteError, match="does not exist"):
        store.save(new_rollout("r-2", model="other"), expected_revision=4)


def test_racing_controllers_advance_a_rollout_exactly_once(
    open_store: Callable[[], SqlStore],
) -> None:
    first = open_store()
    first.save(new_rollout(), expected_revision=0)
    racers = [open_store() for _ in range(6)]
    barrier = threading.Barrier(len(racers))
    outcomes: list[str] = []
    lock = threading.Lock()

    def race(i: int, store: SqlStore) -> None:
        current = store.get("r-1")
        assert current is not None
        moved, record = transition(current.rollout, Phase.GATING, reason=f"racer {i}", at=5.0)
        barrier.wait()
        try:
            store.save(moved, expected_revision=current.revision, transition=record)
            result = "won"
        except StaleWriteError:
            result = "stale"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=race, args=(i, s)) for i, s in enumerate(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["stale"] * 5 + ["won"]
    assert len(first.transitions("r-1")) == 1
    stored = first.get("r-1")
    assert stored is not None
    assert stored.revision == 2


def test_one_active_rollout_per_model(store: SqlStore) -> None:
    first = new_rollout("r-1")
    revision = store.save(first, expected_revision=0)
    with pytest.raises(ActiveRolloutError, match="credit-risk already has an active rollout: r-1"):
        store.save(new_rollout("r-2"), expected_revision=0)
    assert store.get("r-2") is None
    store.save(new_rollout("r-3", model="fraud"), expected_revision=0)  # another model: fine

    active = store.active_for("credit-risk")
    assert active is not None
    assert active.rollout.id == "r-1"

    # Once the first is terminal, the model may have a new active rollout.
    done, record = transition(first, Phase.ABORTED, reason="operator", at=2.0)
    store.save(done, expected_revision=revision, transition=record)
    assert store.active_for("credit-risk") is None
    store.save(new_rollout("r-2"), expected_revision=0)
    active = store.active_for("credit-risk")
    assert active is not None
    assert active.rollout.id == "r-2"

    # Oldest first; equal creation times fall back to the id.
    assert [s.rollout.id for s in store.rollouts(active=True)] == ["r-2", "r-3"]
    assert [s.rollout.id for s in store.rollouts(active=False)] == ["r-1"]
    assert {s.rollout.id for s in store.rollouts(model="credit-risk")} == {"r-1", "r-2"}
    assert [s.rollout.id for s in store.rollouts(active=True, model="fraud")] == ["r-3"]


def test_the_database_itself_refuses_a_second_active_rollout(store: SqlStore) -> None:
    """Even a writer that skips the store's own check cannot insert a second active row."""
    store.save(new_rollout("r-1"), expected_revision=0)
    row = {
        "id": "r-sneaky",
        "model": "credit-risk",
        "version": "9",
        "phase": "progressing",
        "step": 1,
        "canary_weight": 1.0,
        "created_at": 0.0,
        "updated_at": 0.0,
        "reason": "",
        "policy_digest": "",
        "detail": {},
        "revision": 1,
        "active_model": "credit-risk",
    }
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(rollouts).values(**row))
    with store.engine.begin() as conn:  # terminal rows carry NULL: any number of them
        conn.execute(insert(rollouts).values(**{**row, "active_model": None}))
        conn.execute(insert(rollouts).values(**{**row, "id": "r-old", "active_model": None}))
    assert len(store.rollouts(model="credit-risk")) == 3


def test_racing_watchers_start_one_rollout_per_model(
    open_store: Callable[[], SqlStore],
) -> None:
    racers = [open_store() for _ in range(6)]
    barrier = threading.Barrier(len(racers))
    outcomes: list[str] = []
    lock = threading.Lock()

    def race(i: int, store: SqlStore) -> None:
        barrier.wait()
        try:
            store.save(new_rollout(f"r-{i}"), expected_revision=0)
            result = "won"
        except ActiveRolloutError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=race, args=(i, s)) for i, s in enumerate(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["refused"] * 5 + ["won"]
    assert len(racers[0].rollouts(model="credit-risk")) == 1


def test_a_failure_between_the_writes_leaves_neither(store: SqlStore) -> None:
    rollout = new_rollout()
    revision = store.save(rollout, expected_revision=0)
    moved, record = transition(rollout, Phase.GATING, reason="x", at=2.0)
    # The rollout row is updated first; the transition's detail then cannot be written
    # (NaN is not JSON), so the transaction must take the rollout update back too.
    broken = dataclasses.replace(record, detail={"score": math.nan})
    with pytest.raises(StoreError, match="not JSON compliant"):
        store.save(moved, expected_revision=revision, transition=broken)
    stored = store.get(rollout.id)
    assert stored is not None
    assert (stored.rollout, stored.revision) == (rollout, 1)
    assert store.transitions(rollout.id) == []

    # The same for the notifications written after the transition.
    entry = OutboxEntry("r-1/x/0/2", "slack:HOOK", "r-1", "started", {"e": math.inf})
    with pytest.raises(StoreError):
        store.save(moved, expected_revision=revision, transition=record, notifications=[entry])
    stored = store.get(rollout.id)
    assert stored is not None
    assert stored.revision == 1
    assert store.transitions(rollout.id) == []
    assert store.notifications() == []

    # And for a new rollout: the insert is taken back.
    fresh = new_rollout("r-2", model="other")
    _, first = transition(fresh, Phase.GATING, reason="x", at=2.0)
    first = dataclasses.replace(first, detail={"bad": math.inf})
    with pytest.raises(StoreError):
        store.save(fresh, expected_revision=0, transition=first)
    assert store.get("r-2") is None

    # The good write still works afterwards.
    assert store.save(moved, expected_revision=revision, transition=record) == 2


def test_untrusted_names_are_refused_before_any_query(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="model name"):
        store.save(new_rollout().replace(model="x'; DROP TABLE rollouts; --"), expected_revision=0)
    with pytest.raises(ValueError, match="rollout id"):
        store.save(new_rollout("has space"), expected_revision=0)
    with pytest.raises(ValueError, match="model version"):
        store.save(new_rollout().replace(version="1.0"), expected_revision=0)
    assert store.rollouts() == []


def test_a_transition_of_another_rollout_is_refused(store: SqlStore) -> None:
    rollout = new_rollout()
    store.save(rollout, expected_revision=0)
    _, other = transition(new_rollout("r-9"), Phase.GATING, reason="x", at=1.0)
    with pytest.raises(ValueError, match="r-9"):
        store.save(rollout, expected_revision=1, transition=other)


def test_state_survives_reopening(open_store: Callable[[], SqlStore]) -> None:
    first = open_store()
    first.save(full_rollout(), expected_revision=0)
    first.close()
    again = open_store()
    stored = again.get("r-1")
    assert stored is not None
    assert stored.rollout == full_rollout()


def test_controllers_starting_together_on_a_new_store_all_open_it(store_url: str) -> None:
    barrier = threading.Barrier(4)
    opened: list[SqlStore] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def start() -> None:
        barrier.wait()
        try:
            store = SqlStore(store_url)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                opened.append(store)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert len(opened) == 4
        opened[0].save(new_rollout(), expected_revision=0)
        assert all(s.get("r-1") is not None for s in opened)
    finally:
        for store in opened:
            store.close()
