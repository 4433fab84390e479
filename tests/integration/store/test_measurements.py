"""Per-tick measurements and decisions: what a restarted daemon replays, in tick order."""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy import func, select

from canary.errors import StoreError
from canary.store.base import (
    DecisionRecord,
    DuplicateTickError,
    Measurement,
    MeasurementOutcome,
)
from canary.store.sql import SqlStore, cursors
from tests.integration.store.records import new_rollout

pytestmark = pytest.mark.integration

SNAPSHOT = {
    "t": 15.0,
    "canary_weight": 5,
    "metrics": {
        "errors": {
            "baseline": {"events": 12, "total": 9500},
            "canary": {"events": 3, "total": 480},
        },
        "latency": {
            "baseline": {"buckets": [[0.05, 8000], [0.1, 9300], ["+Inf", 9500]]},
            "canary": {"buckets": [[0.05, 400], [0.1, 460], ["+Inf", 480]]},
        },
    },
}


def measurement(tick: int, **changes: Any) -> Measurement:
    fields: dict[str, Any] = {
        "rollout_id": "r-1",
        "tick": tick,
        "t": 15.0 * tick,
        "outcome": MeasurementOutcome.OK,
        "snapshot": {**SNAPSHOT, "t": 15.0 * tick},
        "analysis": {"verdict": "pass", "e_values": {"errors": 1.25}},
        "at": 1000.0 + 15 * tick,
    }
    fields.update(changes)
    return Measurement(**fields)


@pytest.fixture
def with_rollout(store: SqlStore) -> SqlStore:
    store.save(new_rollout(), expected_revision=0)
    return store


def test_measurements_come_back_in_tick_order_with_every_field(with_rollout: SqlStore) -> None:
    store = with_rollout
    written = {
        3: measurement(3),
        1: measurement(1),
        2: measurement(
            2,
            outcome=MeasurementOutcome.ERROR,
            snapshot=None,
            analysis=None,
            error="prometheus: HTTP 503",
        ),
        4: measurement(4, outcome=MeasurementOutcome.NO_DATA, snapshot={}, analysis=None),
    }
    for tick in (3, 1, 2, 4):
        store.add_measurement(written[tick])
    read = store.measurements("r-1")
    assert [m.tick for m in read] == [1, 2, 3, 4]
    assert read == [written[1], written[2], written[3], written[4]]
    assert read[1].snapshot is None
    assert read[1].error == "prometheus: HTTP 503"
    assert read[3].snapshot == {}
    assert all(isinstance(m.outcome, MeasurementOutcome) for m in read)
    assert store.measurements("other") == []


def test_a_decision_is_stored_with_its_measurement(with_rollout: SqlStore) -> None:
    store = with_rollout
    decision = DecisionRecord(
        rollout_id="r-1",
        tick=1,
        at=1015.0,
        action="rollback",
        reasons=("errors (group b) e-value 41 >= 20",),
        detail={"breaches": [{"metric": "errors", "slice": "b"}]},
    )
    store.add_measurement(measurement(1), decision)
    store.add_measurement(measurement(2))
    assert store.decisions("r-1") == [decision]


def test_a_tick_is_recorded_once(with_rollout: SqlStore) -> None:
    store = with_rollout
    store.add_measurement(measurement(1))
    with pytest.raises(DuplicateTickError, match="tick 1"):
        store.add_measurement(measurement(1, t=99.0))
    assert [m.t for m in store.measurements("r-1")] == [15.0]


def test_a_failed_decision_write_takes_its_measurement_back(with_rollout: SqlStore) -> None:
    store = with_rollout
    bad = DecisionRecord("r-1", 1, 1015.0, "hold", detail={"e": math.nan})
    with pytest.raises(StoreError, match="not JSON"):
        store.add_measurement(measurement(1), bad)
    assert store.measurements("r-1") == []
    assert store.decisions("r-1") == []


def test_a_measurement_of_an_unknown_rollout_is_refused(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="record tick 1 of rollout ghost"):
        store.add_measurement(measurement(1, rollout_id="ghost"))
    assert store.measurements("ghost") == []


def test_a_decision_must_belong_to_its_measurement(with_rollout: SqlStore) -> None:
    with pytest.raises(ValueError, match="own tick"):
        with_rollout.add_measurement(measurement(1), DecisionRecord("r-1", 2, 0.0, "hold"))
    with pytest.raises(ValueError, match="decision action"):
        with_rollout.add_measurement(measurement(1), DecisionRecord("r-1", 1, 0.0, "DROP x"))


def test_only_the_latest_cursor_is_kept(with_rollout: SqlStore) -> None:
    """The metrics source's cursor is the largest part of a tick's record and only the
    latest is read: one row per rollout, replaced by each tick that carries one."""
    store = with_rollout
    assert store.cursor("r-1") is None
    store.add_measurement(measurement(1), cursor={"series": {"a": 1.0}})
    store.add_measurement(measurement(2))  # a failed tick has no cursor: the last one stays
    assert store.cursor("r-1") == {"series": {"a": 1.0}}
    store.add_measurement(measurement(3), cursor={"series": {"a": 7.0, "b": 2.0}})
    assert store.cursor("r-1") == {"series": {"a": 7.0, "b": 2.0}}
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cursors)).scalar() == 1


def test_a_cursor_is_written_with_its_measurement_or_not_at_all(with_rollout: SqlStore) -> None:
    store = with_rollout
    store.add_measurement(measurement(1), cursor={"series": {"a": 1.0}})
    with pytest.raises(DuplicateTickError):
        store.add_measurement(measurement(1), cursor={"series": {"a": 9.0}})
    assert store.cursor("r-1") == {"series": {"a": 1.0}}
