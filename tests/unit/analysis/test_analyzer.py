"""The incremental analyzer: determinism, data problems as outcomes, decisions, attribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canary.analysis.analyzer import INVALID, MISSING, OK, WAITING, Analyzer, TickResult
from canary.analysis.replay import LineReader
from canary.analysis.snapshot import Counts, MetricCounts, RatioArm, Snapshot
from tests.unit.analysis.rollouts import Arm, four_metric_policy, policy_with, rollout

POLICY = four_metric_policy()
READER = LineReader(POLICY)


def snapshots(lines: list[str]) -> list[Snapshot]:
    return [READER.snapshot(line) for line in lines]


def regressed_lines(seed: int = 5) -> list[str]:
    canary = Arm(accuracy={"a": 0.9, "b": 0.9, "c": 0.78})
    return rollout(np.random.default_rng(seed), ticks=160, canary=canary)


def comparable(result: TickResult) -> tuple[object, ...]:
    return (
        result.tick,
        result.t,
        result.e_value,
        result.rollback,
        result.breaches,
        result.enough,
        result.canary_total,
        tuple(
            sorted(
                (k, v.status, v.e_value, v.enough, v.progress, v.idle_for)
                for k, v in result.metrics.items()
            )
        ),
    )


@pytest.fixture(scope="module")
def regressed() -> list[Snapshot]:
    return snapshots(regressed_lines())


@pytest.fixture(scope="module")
def reference(regressed: list[Snapshot]) -> list[TickResult]:
    return Analyzer(POLICY).update_many(regressed)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=8))
def test_results_do_not_depend_on_how_ticks_are_fed(
    regressed: list[Snapshot], reference: list[TickResult], sizes: list[int]
) -> None:
    analyzer = Analyzer(POLICY)
    results: list[TickResult] = []
    position = 0
    for size in [*sizes, len(regressed)]:
        if analyzer.rolled_back or position >= len(regressed):
            break
        results += analyzer.update_many(regressed[position : position + size])
        position += size
    assert [comparable(r) for r in results] == [comparable(r) for r in reference]


def test_one_by_one_equals_all_at_once_and_the_json_path_equals_the_snapshot_path(
    regressed: list[Snapshot], reference: list[TickResult]
) -> None:
    one = Analyzer(POLICY)
    single = []
    for snap in regressed[: len(reference)]:
        single.append(one.update(snap))
    assert [comparable(r) for r in single] == [comparable(r) for r in reference]
    from_json = Analyzer(POLICY).update_many([READER.tick(line) for line in regressed_lines()])
    assert [comparable(r) for r in from_json] == [comparable(r) for r in reference]


def test_a_drop_in_one_group_is_rolled_back_and_named(reference: list[TickResult]) -> None:
    final = reference[-1]
    assert final.rollback
    assert [r.rollback for r in reference].count(True) == 1
    first = final.breaches[0]
    assert (first.metric, first.slice) == ("accuracy", "c")
    assert first.e_value >= 1 / (0.05 * 0.25 * 0.5 / 3)  # its own Bonferroni threshold
    assert first.estimate is not None
    assert first.estimate < -0.02  # accuracy difference canary - baseline
    low, high = first.interval
    assert low is not None
    assert high is not None
    assert low < first.estimate < high


def test_after_a_rollback_the_analyzer_refuses_more_ticks(regressed: list[Snapshot]) -> None:
    analyzer = Analyzer(POLICY)
    results = analyzer.update_many(regressed)
    assert results[-1].rollback
    assert len(results) < len(regressed)  # stopped at the decision
    with pytest.raises(RuntimeError, match="rolled back"):
        analyzer.update(regressed[-1])


def test_a_missing_metric_is_an_outcome_not_an_exception() -> None:
    snaps = snapshots(rollout(np.random.default_rng(1), ticks=6))
    gap = Snapshot(
        t=snaps[3].t,
        canary_weight=5,
        metrics={k: v for k, v in snaps[3].metrics.items() if k != "errors"},
    )
    analyzer = Analyzer(POLICY)
    results = analyzer.update_many([*snaps[:3], gap, *snaps[4:]])
    assert results[3].metrics["errors"].status == MISSING
    assert results[3].metrics["errors"].problem == "metric 'errors' is missing"
    assert results[3].metrics["errors"].e_value == results[2].metrics["errors"].e_value
    assert results[4].metrics["errors"].status == OK
    # the tick after the gap carries everything since the last good one
    full = Analyzer(POLICY).update_many([*snaps[:3], *snaps[4:]])
    assert results[-1].metrics["errors"].e_value == pytest.approx(
        full[-1].metrics["errors"].e_value
    )


def _with_errors(snap: Snapshot, events: float, total: float) -> Snapshot:
    metrics = dict(snap.metrics)
    old = metrics["errors"]
    assert isinstance(old.canary, RatioArm)
    metrics["errors"] = MetricCounts(baseline=old.baseline, canary=RatioArm(Counts(events, total)))
    return Snapshot(t=snap.t, canary_weight=snap.canary_weight, metrics=metrics)


def test_counts_going_backwards_are_invalid_and_never_become_evidence() -> None:
    snaps = snapshots(rollout(np.random.default_rng(2), ticks=8))
    reset = _with_errors(snaps[4], 0, 0)  # a counter reset the source did not handle
    results = Analyzer(POLICY).update_many([*snaps[:4], reset, *snaps[5:]])
    status = results[4].metrics["errors"]
    assert status.status == INVALID
    assert status.problem is not None
    assert "went backwards" in status.problem
    assert results[4].metrics["errors"].e_value == results[3].metrics["errors"].e_value
    clean = Analyzer(POLICY).update_many([*snaps[:4], *snaps[5:]])
    assert results[-1].metrics["errors"].e_value == pytest.approx(
        clean[-1].metrics["errors"].e_value
    )


def test_negative_and_inconsistent_counts_are_invalid() -> None:
    snaps = snapshots(rollout(np.random.default_rng(3), ticks=3))
    negative = _with_errors(snaps[1], -1, 100)
    more_errors_than_requests = _with_errors(snaps[2], 10**6, 100)
    results = Analyzer(POLICY).update_many([snaps[0], negative, more_errors_than_requests])
    assert "negative" in (results[1].metrics["errors"].problem or "")
    assert "exceeds" in (results[2].metrics["errors"].problem or "")


def test_no_traffic_yet_is_waiting_then_counts_start() -> None:
    policy = policy_with("""
analysis:
  metrics:
    - {name: errors, kind: ratio, events: e, total: t, worse_when: higher}
""")
    empty = MetricCounts(RatioArm(Counts(0, 0)), RatioArm(Counts(0, 0)))
    some = MetricCounts(RatioArm(Counts(5, 500)), RatioArm(Counts(0, 0)))
    more = MetricCounts(RatioArm(Counts(9, 1000)), RatioArm(Counts(4, 30)))
    analyzer = Analyzer(policy)
    results = analyzer.update_many(
        [
            Snapshot(15, 0, {"errors": empty}),
            Snapshot(30, 1, {"errors": some}),
            Snapshot(45, 1, {"errors": more}),
        ]
    )
    assert [r.metrics["errors"].status for r in results] == [WAITING, OK, OK]
    assert results[1].metrics["errors"].e_value == 1.0  # no canary traffic: no evidence
    assert results[2].metrics["errors"].e_value > 1.0
    assert results[2].canary_total == 30
    # idle: the canary first had data at t = 45
    assert results[1].metrics["errors"].idle_for == 30
    assert results[2].metrics["errors"].idle_for == 0


def test_progress_toward_the_minimum_sample_only_grows() -> None:
    snaps = snapshots(rollout(np.random.default_rng(4), ticks=80, share=lambda k: 0.5))
    results = Analyzer(POLICY).update_many(snaps)
    for name in ("errors", "accuracy", "latency", "approval_parity"):
        progress = [r.metrics[name].progress for r in results]
        assert progress == sorted(progress)
        assert progress[-1] > 0
    assert results[-1].metrics["approval_parity"].enough
    assert results[-1].enough == all(s.enough for s in results[-1].metrics.values())


def test_the_combined_e_value_is_the_weighted_average() -> None:
    snaps = snapshots(rollout(np.random.default_rng(6), ticks=30, canary=Arm(error_rate=0.013)))
    final = Analyzer(POLICY).update_many(snaps)[-1]
    average = sum(s.e_value for s in final.metrics.values()) / 4
    assert final.e_value == pytest.approx(average)
    assert final.rollback == (final.e_value >= 20)


def test_weights_give_a_metric_a_larger_share_of_alpha() -> None:
    analysis = """
analysis:
  metrics:
    - {name: errors, kind: ratio, events: e, total: t, worse_when: higher, weight: 3}
    - {name: other, kind: ratio, events: e, total: t, worse_when: higher}
"""
    analyzer = Analyzer(policy_with(analysis))
    assert analyzer.shares.tolist() == [0.75, 0.25]
    assert math.isclose(analyzer.metrics[0].share, 0.75)


def test_a_saved_state_goes_on_exactly_where_it_was(
    regressed: list[Snapshot], reference: list[TickResult]
) -> None:
    import json

    split = len(reference) // 2
    first = Analyzer(POLICY)
    head = first.update_many(regressed[:split])
    saved = json.loads(json.dumps(first.state()))  # through JSON, as a store would keep it
    resumed = Analyzer.from_state(POLICY, saved)
    tail = resumed.update_many(regressed[split:])
    assert [comparable(r) for r in head + tail] == [comparable(r) for r in reference]
    other = policy_with("""
analysis:
  metrics:
    - {name: errors, kind: ratio, events: e, total: t, worse_when: higher}
""")
    with pytest.raises(ValueError, match="another policy"):
        Analyzer.from_state(other, saved)


def test_a_tail_only_latency_regression_is_caught_on_the_histogram() -> None:
    """p99 worse while the mean barely moves: 0.6% of the requests move from 25-50 ms to
    0.5-1 s. The per-bound exceedance tests catch it within the hour in nearly every run."""
    from tests.unit.analysis.rollouts import BOUNDS, LATENCY

    slow = list(LATENCY)
    slow[1] -= 0.006  # (25 ms, 50 ms]
    slow[5] += 0.006  # (0.5 s, 1 s]
    mids = [0.0125, 0.0375, 0.075, 0.175, 0.375, 0.75, 1.5]
    mean_base = sum(p * m for p, m in zip(LATENCY, mids, strict=True))
    mean_slow = sum(p * m for p, m in zip(slow, mids, strict=True))
    assert len(BOUNDS) + 1 == len(LATENCY)
    policy = policy_with("""
analysis:
  metrics:
    - {name: latency, kind: histogram, buckets: request_duration_seconds_bucket}
""")
    caught = 0
    runs = 30
    for seed in range(runs):
        lines = rollout(np.random.default_rng(100 + seed), ticks=240, canary=Arm(latency=slow))
        reader = LineReader(policy)
        results = Analyzer(policy).update_many([reader.tick(line) for line in lines])
        caught += results[-1].rollback
    assert caught / runs >= 0.9
    assert (mean_slow - mean_base) / mean_base < 0.07  # the mean moves little


def test_a_sliced_histogram_names_the_slice_whose_tail_got_slower() -> None:
    import json

    from tests.unit.analysis.rollouts import BOUNDS, LATENCY

    policy = policy_with("""
analysis:
  metrics:
    - {name: latency, kind: histogram, buckets: request_duration_seconds_bucket,
       slice_by: region}
""")
    rng = np.random.default_rng(9)
    slow = list(LATENCY)
    slow[1] -= 0.03
    slow[5] += 0.03
    totals = {
        (arm, region): np.zeros(len(LATENCY), dtype=int)
        for arm in ("baseline", "canary")
        for region in ("eu", "us")
    }
    lines = []
    for k in range(120):
        arms = {}
        for arm, size in (("baseline", 1400), ("canary", 100)):
            slices = {}
            for region in ("eu", "us"):
                probs = slow if (arm, region) == ("canary", "us") else LATENCY
                totals[arm, region] += rng.multinomial(size // 2, probs)
                cumulative = np.cumsum(totals[arm, region])
                slices[region] = {
                    "buckets": [[b, int(c)] for b, c in zip(BOUNDS, cumulative[:-1], strict=True)]
                    + [["+Inf", int(cumulative[-1])]]
                }
            arms[arm] = {"slices": slices}
        lines.append(
            json.dumps({"t": 15.0 * (k + 1), "canary_weight": 6.7, "metrics": {"latency": arms}})
        )
    reader = LineReader(policy)
    from_json = Analyzer(policy).update_many([reader.tick(line) for line in lines])
    from_snapshots = Analyzer(policy).update_many([reader.snapshot(line) for line in lines])
    assert [comparable(r) for r in from_json] == [comparable(r) for r in from_snapshots]
    final = from_json[-1]
    assert final.rollback
    assert (final.breaches[0].metric, final.breaches[0].slice) == ("latency", "us")


def test_a_wider_parity_gap_than_the_baselines_is_rolled_back() -> None:
    analysis = """
analysis:
  metrics:
    - {name: errors, kind: ratio, events: e, total: t, worse_when: higher}
  fairness:
    - {name: approval_parity, positives: p, total: t, slice_by: group,
       min_ratio: null, max_gap_increase: 0.05}
"""
    policy = policy_with(analysis)
    reader = LineReader(policy)
    wide = Arm(selection={"a": 0.30, "b": 0.30, "c": 0.15})
    lines = rollout(np.random.default_rng(12), ticks=200, share=lambda k: 0.25, canary=wide)
    results = Analyzer(policy).update_many([reader.tick(line) for line in lines])
    assert results[-1].rollback
    breach = results[-1].breaches[0]
    assert (breach.metric, breach.slice) == ("approval_parity", "c")
    assert breach.estimate is not None
    assert breach.estimate > 0.05  # the gap grew by about 0.15
    fair = rollout(np.random.default_rng(13), ticks=120, share=lambda k: 0.25)
    quiet = Analyzer(policy).update_many([reader.tick(line) for line in fair])
    assert quiet[-1].metrics["approval_parity"].e_value < 20


def test_a_slice_that_appears_after_setup_counts_in_the_pooled_test() -> None:
    policy = policy_with("""
analysis:
  metrics:
    - {name: errors, kind: ratio, events: e, total: t, worse_when: higher, slice_by: region}
""")

    def tick(k: int, regions: dict[str, tuple[int, int, int, int]]) -> Snapshot:
        base = {r: Counts(v[0], v[1]) for r, v in regions.items()}
        can = {r: Counts(v[2], v[3]) for r, v in regions.items()}
        return Snapshot(
            15.0 * k, 5, {"errors": MetricCounts(RatioArm(slices=base), RatioArm(slices=can))}
        )

    rng = np.random.default_rng(21)
    totals = np.zeros((2, 4))
    snaps = []
    for k in range(1, 80):
        for i in range(2 if k >= 3 else 1):  # region "new" appears at tick 3
            n_b, n_c = 1400, 100
            rate_c = 0.01 if i == 0 else 0.06  # and only it regressed
            totals[i] += (rng.binomial(n_b, 0.01), n_b, rng.binomial(n_c, rate_c), n_c)
        regions = {"old": tuple(int(v) for v in totals[0])}
        if k >= 3:
            regions["new"] = tuple(int(v) for v in totals[1])
        snaps.append(tick(k, regions))  # type: ignore[arg-type]
    results = Analyzer(policy).update_many(snaps)
    assert results[-1].rollback
    assert (results[-1].breaches[0].metric, results[-1].breaches[0].slice) == ("errors", None)
    # and the JSON path reads the later slice the same way
    import json

    lines = []
    for snap in snaps:
        metric = snap.metrics["errors"]
        arms = {
            arm: {
                "slices": {
                    r: {"events": c.events, "total": c.total}
                    for r, c in getattr(metric, arm).slices.items()
                }
            }
            for arm in ("baseline", "canary")
        }
        lines.append(json.dumps({"t": snap.t, "canary_weight": 5, "metrics": {"errors": arms}}))
    reader = LineReader(policy)
    from_json = Analyzer(policy).update_many([reader.tick(line) for line in lines])
    assert [comparable(r) for r in from_json] == [comparable(r) for r in results]


def test_a_fast_model_with_an_empty_tail_still_reaches_its_minimum_sample() -> None:
    """Every request in the first bucket on both arms: the count test sees no slow requests,
    so without the rate floor the latency metric could never be promoted. With it, the metric
    is sampled enough after a few thousand requests, and a tail that then appears is still
    caught (the floor only decides when to stop waiting, never what counts as evidence)."""
    from canary.analysis.snapshot import Buckets, HistogramArm

    policy = policy_with(
        """
analysis:
  metrics:
    - name: latency
      kind: histogram
      buckets: 'h_bucket{model="m"}'
      tolerance: {relative: 1.0}
"""
    )
    bounds = (0.005, 0.01, 0.025, 0.1, math.inf)

    def hist(total: float, slow: float = 0.0) -> HistogramArm:
        fast = total - slow
        return HistogramArm(buckets=Buckets(bounds, (fast, fast, fast, total, total)))

    analyzer = Analyzer(policy)
    result = None
    for tick in range(1, 200):
        n_b, n_c = 250.0 * tick, 250.0 * tick
        snap = Snapshot(
            t=15.0 * tick,
            canary_weight=50,
            metrics={"latency": MetricCounts(baseline=hist(n_b), canary=hist(n_c))},
        )
        result = analyzer.update(snap)
        if result.enough:
            break
    assert result is not None
    assert result.enough, result.metrics["latency"]
    assert not result.rollback
    ticks_to_enough = result.tick
    assert ticks_to_enough < 100  # 25,000 canary requests at most

    # the same stable model, now with 5% of the canary's requests slower than 25 ms
    analyzer = Analyzer(policy)
    slow = 0.0
    for tick in range(1, 200):
        slow += 0.05 * 250
        snap = Snapshot(
            t=15.0 * tick,
            canary_weight=50,
            metrics={
                "latency": MetricCounts(
                    baseline=hist(250.0 * tick), canary=hist(250.0 * tick, slow)
                )
            },
        )
        result = analyzer.update(snap)
        if result.rollback:
            break
    assert result.rollback
    assert result.tick <= ticks_to_enough
