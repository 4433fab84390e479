from hypothesis import given
from hypothesis import strategies as st

from canary.metrics.counters import CounterTracker


def by_version(labels):
    return labels.get("version")


def test_baseline_is_not_counted_then_deltas_are():
    t = CounterTracker()
    assert t.update([({"version": "1", "i": "a"}, 100.0)], by_version) == {"1": 0.0}
    assert t.update([({"version": "1", "i": "a"}, 130.0)], by_version) == {"1": 30.0}


def test_new_series_counts_from_zero_and_reset_adds_not_subtracts():
    t = CounterTracker()
    t.update([({"version": "1"}, 50.0)], by_version)
    t.update([({"version": "1"}, 60.0), ({"version": "2"}, 7.0)], by_version)
    assert t.totals == {"1": 10.0, "2": 7.0}
    # version 2's server restarts: 7 -> 3 means 3 new requests since the restart
    t.update([({"version": "1"}, 65.0), ({"version": "2"}, 3.0)], by_version)
    assert t.totals == {"1": 15.0, "2": 10.0}


def test_missing_series_adds_nothing_and_nan_is_ignored():
    t = CounterTracker()
    t.update([({"version": "1"}, 5.0)], by_version)
    t.update([], by_version)
    t.update([({"version": "1"}, float("nan"))], by_version)
    t.update([({"version": "1"}, 9.0)], by_version)
    assert t.totals == {"1": 4.0}


def test_state_round_trip_continues_the_same_counts():
    t = CounterTracker()
    t.update([({"version": "1"}, 5.0)], by_version)
    t.update([({"version": "1"}, 8.0)], by_version)
    resumed = CounterTracker.from_state(t.to_state())
    assert resumed.update([({"version": "1"}, 10.0)], by_version) == {"1": 5.0}


@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=3),
        min_size=2,
        max_size=20,
    )
)
def test_totals_never_decrease_whatever_the_readings(readings):
    t = CounterTracker()
    previous = 0.0
    for values in readings:
        samples = [({"version": "1", "i": str(i)}, float(v)) for i, v in enumerate(values)]
        total = t.update(samples, by_version).get("1", 0.0)
        assert total >= previous
        previous = total


@given(
    st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=30),
    st.sets(st.integers(min_value=0, max_value=29)),
)
def test_increments_are_recovered_across_restarts(increments, restarts):
    """Exact whenever a restart shows as a drop; never more than the truth otherwise."""
    t = CounterTracker()
    t.update([({"version": "1"}, 0.0)], by_version)
    value = 0.0
    detectable = True
    for step, inc in enumerate(increments):
        before = value
        if step in restarts:
            value = 0.0
        value += inc
        if step in restarts and value >= before and before > 0:
            detectable = False
        t.update([({"version": "1"}, value)], by_version)
    if detectable:
        assert t.totals["1"] == sum(increments)
    else:
        assert t.totals["1"] < sum(increments)
