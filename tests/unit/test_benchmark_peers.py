"""The peer methods of the detection benchmark on inputs whose right decision is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from benchmarks.sim import report
from benchmarks.sim.canary_method import outcome_from_result
from benchmarks.sim.flagger import ARGO, FLAGGER, Threshold, threshold_method
from benchmarks.sim.kayenta import classify, confidence_interval, kayenta, mann_whitney_z
from benchmarks.sim.naive import naive_ztest
from benchmarks.sim.oracle import oracles, sprt_arm, sprt_request
from benchmarks.sim.outcome import Breach, Outcome
from benchmarks.sim.policyview import PolicyView, Rule, view_of
from benchmarks.sim.rollout import CANARY, RatioCounts, Rollout
from benchmarks.sim.scenarios import scenario
from benchmarks.sim.simulate import simulate

ERRORS = Rule(name="errors", kind="ratio", worse_when="higher", relative=0.1, share=1.0)
VIEW = PolicyView(alpha=0.05, interval=15.0, rules=(ERRORS,))
ERRORS_BOUND: dict[Breach, Threshold] = {("errors", None): Threshold(max=0.015)}


def errors_rollout(per_tick_errors: list[list[int]], per_tick_requests: list[list[int]]) -> Rollout:
    """A rollout with only an errors metric, from per-tick [baseline, canary] counts."""
    ev = np.cumsum(np.asarray(per_tick_errors, dtype=np.int64).T, axis=1)[..., None]
    tot = np.cumsum(np.asarray(per_tick_requests, dtype=np.int64).T, axis=1)[..., None]
    ticks = ev.shape[1]
    return Rollout(
        t=(np.arange(ticks, dtype=np.float64) + 1) * 15.0,
        weight=np.full(ticks, 5.0),
        metrics={"errors": RatioCounts(events=ev, total=tot)},
        exposure_metric="errors",
    )


# --- Kayenta ---------------------------------------------------------------------------------


def test_mann_whitney_z_matches_the_normal_approximation_with_ties() -> None:
    x = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 4.0])
    y = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    expected = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").pvalue
    assert 2 * stats.norm.sf(abs(mann_whitney_z(x, y))) == pytest.approx(expected, rel=1e-12)
    assert mann_whitney_z(x + 10, y) > 0 > mann_whitney_z(x - 10, y)
    assert mann_whitney_z(np.ones(5), np.ones(5)) == 0.0


def test_kayenta_flags_a_clearly_shifted_series_in_its_direction_only() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.normal(10.0, 1.0, 30)
    worse = rng.normal(13.0, 1.0, 30)
    assert classify(baseline, worse, "increase") == "High"
    assert classify(baseline, worse, "either") == "High"
    assert classify(baseline, worse, "decrease") == "Pass"
    assert classify(worse, baseline, "decrease") == "Low"
    assert classify(baseline, baseline.copy(), "either") == "Pass"
    assert classify(baseline, rng.permutation(baseline), "either") == "Pass"
    assert classify(baseline, rng.normal(10.0, 1.0, 30), "either") == "Pass"
    assert classify([], worse, "either") == "Nodata"
    assert classify([1.0, 1.0], [1.0, 1.0, 1.0], "either") == "Pass"
    # Few points cannot reach 98% confidence, however far apart they are.
    assert classify([1.0, 2.0, 3.0], [10.0, 11.0, 12.0], "increase") == "Pass"


def test_kayenta_tolerance_passes_a_significant_but_uncertain_shift() -> None:
    # Twenty points 0..19 against the same shifted by 5.5: the 98% interval of the shift is
    # [0.5, 10.5] around the estimate 5.5. It excludes 0, but its lower end is below
    # 0.25 x 5.5 = 1.375, so Kayenta passes it; with no tolerance it would fail it.
    base = np.arange(20.0)
    lower, upper, estimate = confidence_interval(base + 5.5, base, 0.98)
    assert (lower, upper, estimate) == (0.5, 10.5, 5.5)
    assert classify(base, base + 5.5, "increase") == "Pass"
    assert classify(base, base + 5.5, "increase", tolerance=0.0) == "High"
    assert classify(base, base + 8.0, "increase") == "High"


def test_kayenta_confidence_interval_covers_the_true_shift() -> None:
    rng = np.random.default_rng(11)
    covered, runs = 0, 600
    for _ in range(runs):
        base = rng.normal(0.0, 1.0, 25)
        canary = rng.normal(0.7, 1.0, 25)
        lower, upper, _ = confidence_interval(canary, base, 0.90)
        covered += lower <= 0.7 <= upper
    assert abs(covered / runs - 0.90) <= 3.5 * math.sqrt(0.9 * 0.1 / runs)


def test_kayenta_rolls_back_a_bad_canary_and_not_an_identical_one() -> None:
    ticks = 120
    requests = [[2000, 400]] * ticks
    same = errors_rollout([[20, 4]] * ticks, requests)
    worse = errors_rollout([[20, 16]] * ticks, requests)
    view = PolicyView(0.05, 15.0, (Rule("errors", "ratio", "higher"),))
    assert not kayenta(same, view).rolled_back
    out = kayenta(worse, view)
    assert out.rolled_back
    assert out.breaches == (("errors", None),)
    # Constant points tie within each arm. With 3 points each z = 4 / sqrt(0.75 (7 - 48/30))
    # = 1.99 < 2.326 (98%, two-sided); with 4, z = 7.5 / sqrt(16/12 (9 - 120/56)) = 2.48.
    assert out.tick == 4 * 4 - 1


# --- Flagger and Argo ------------------------------------------------------------------------


def test_flagger_rolls_back_one_run_after_the_fifth_failed_check() -> None:
    ticks = 60
    bad = errors_rollout([[10, 9]] * ticks, [[950, 50]] * ticks)  # canary 18% errors
    good = errors_rollout([[10, 0]] * ticks, [[950, 50]] * ticks)
    bounds = ERRORS_BOUND
    out = threshold_method(bad, VIEW, bounds, FLAGGER)
    # Checks at minutes 1..5 fail; the run at minute 6 sees FailedChecks >= 5 and rolls back.
    assert out.t == 360.0
    assert out.exposure == 24 * 50
    assert out.breaches == (("errors", None),)
    assert not threshold_method(good, VIEW, bounds, FLAGGER).rolled_back


def test_flagger_failures_add_up_and_never_reset() -> None:
    # The canary fails only in odd minutes: five failures take nine minutes, then one more run.
    per_tick = [[10, 9] if (k // 4) % 2 == 0 else [10, 0] for k in range(80)]
    rollout = errors_rollout(per_tick, [[950, 50]] * 80)
    out = threshold_method(rollout, VIEW, ERRORS_BOUND, FLAGGER)
    assert out.t == 600.0


def test_argo_counts_failures_per_metric_against_failure_limit() -> None:
    ticks = 240
    rollout = errors_rollout([[10, 9]] * ticks, [[950, 50]] * ticks)
    out = threshold_method(rollout, VIEW, ERRORS_BOUND, ARGO)
    assert out.t == 20 * 60.0  # the 4th failed 5-minute measurement exceeds failureLimit 3
    unchecked = threshold_method(rollout, VIEW, {}, ARGO)
    assert not unchecked.rolled_back


def test_threshold_windows_without_data_are_skipped() -> None:
    rollout = errors_rollout([[10, 0]] * 40, [[1000, 0]] * 40)
    assert not threshold_method(
        rollout, VIEW, {("errors", None): Threshold(max=0.0)}, FLAGGER
    ).rolled_back


# --- the naive z-test ------------------------------------------------------------------------


def test_naive_z_test_decides_clear_cases() -> None:
    ticks = 20
    bad = errors_rollout([[10, 25]] * ticks, [[1000, 500]] * ticks)
    good = errors_rollout([[10, 0]] * ticks, [[1000, 500]] * ticks)
    out = naive_ztest(bad, VIEW)
    assert out.tick == 0
    assert out.breaches == (("errors", None),)
    assert not naive_ztest(good, VIEW).rolled_back
    # Within the tolerance (canary 1.05 x baseline) it never rolls back, however much data.
    within = errors_rollout([[100, 105]] * ticks, [[10000, 10000]] * ticks)
    assert not naive_ztest(within, VIEW).rolled_back


def test_peeking_inflates_false_rollbacks_that_one_look_keeps_at_alpha() -> None:
    rng = np.random.default_rng(2024)
    runs, ticks, p = 400, 240, 0.01
    peeking = once = 0
    for _ in range(runs):
        n = rng.poisson(1500, size=ticks)
        n_c = rng.binomial(n, 0.05)
        volume = np.stack([n - n_c, n_c], axis=1)
        errors = rng.binomial(volume, p)
        rollout = errors_rollout(errors.tolist(), volume.tolist())
        view = PolicyView(0.05, 15.0, (Rule("errors", "ratio", "higher"),))
        peeking += naive_ztest(rollout, view).rolled_back
        once += naive_ztest(
            errors_rollout([errors.sum(axis=0).tolist()], [volume.sum(axis=0).tolist()]), view
        ).rolled_back
    assert once / runs <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)
    assert peeking / runs > 2 * 0.05


# --- the oracle SPRT -------------------------------------------------------------------------


def test_sprt_arm_by_hand() -> None:
    # Equal traffic (rho = 1/2), true ratio 3: theta = 3/4, each canary error adds ln 1.5.
    # ln 20 = 2.996: 7 errors give 2.84, 8 give 3.24.
    volume = np.array([[100, 200], [100, 200]])
    seven = np.array([[[0], [0]], [[7], [7]]])
    eight = np.array([[[0], [0]], [[8], [8]]])
    assert sprt_arm(seven, volume, [3.0], 0.05) is None
    assert sprt_arm(eight, volume, [3.0], 0.05) == 0
    # A baseline error takes ln 2 back (1 - theta = 1/4 against 1/2).
    mixed = np.array([[[1], [1]], [[8], [8]]])
    assert sprt_arm(mixed, volume, [3.0], 0.05) is None
    # H0 at a tolerance r0 = 1.5: theta0 = 0.6, a canary error adds only ln 1.25 = 0.223;
    # 13 errors give 2.90, 14 give 3.12.
    assert sprt_arm(np.array([[[0]], [[13]]]), volume[:, :1], [3.0], 0.05, 1.5) is None
    assert sprt_arm(np.array([[[0]], [[14]]]), volume[:, :1], [3.0], 0.05, 1.5) == 0


def test_sprt_request_by_hand() -> None:
    # p0 = 0.01, p1 = 0.02: an error adds ln 2 = 0.693, a success ln(0.98/0.99) = -0.01015.
    # ln 20 = 2.996: 4 errors give 2.77, 5 give 3.47, 5 errors and 60 successes 2.86.
    lr = [math.log(2.0), math.log(0.98 / 0.99)]
    assert sprt_request(np.array([[4, 0], [5, 0]]), lr, 0.05) == 1
    assert sprt_request(np.array([[5, 0]]), lr, 0.05) == 0
    assert sprt_request(np.array([[4, 0], [5, 60]]), lr, 0.05) is None


def test_oracle_detects_every_regression_and_blames_it() -> None:
    for name in ("errors_2x", "latency_p99", "accuracy_group", "selection_group"):
        s = scenario(name)
        rollout = simulate(s.config, np.random.default_rng(9))
        assert s.expected is not None
        outs = oracles(rollout, s.config, s.expected, 0.05, tolerance=(0.1, None))
        assert set(outs) == {"oracle_arm", "oracle_tolerance", "oracle_request"}
        for out in outs.values():
            assert out.rolled_back, name
            assert out.breaches == (s.expected,), name


# --- plumbing --------------------------------------------------------------------------------


def test_policy_view_shares_sum_to_one() -> None:
    view = view_of(scenario("aa_constant").policy())
    assert sum(r.share for r in view.rules) == pytest.approx(1.0)
    assert [r.kind for r in view.rules] == ["ratio", "histogram", "ratio", "fairness"]
    assert view.rule("accuracy").absolute == 0.02
    assert view.rule("accuracy").sliced
    assert view.rule("approval_parity").min_ratio == 0.8


def test_canary_result_maps_to_the_tick_it_names() -> None:
    rollout = errors_rollout([[10, 1]] * 8, [[950, 50]] * 8)
    result = {
        "verdict": "rollback",
        "t": 45.0,
        "breaches": [{"metric": "errors", "slice": None, "e_value": 30.0}],
    }
    out = outcome_from_result(rollout, result)
    assert out.tick == 2
    assert out.exposure == 150
    assert out.breaches == (("errors", None),)
    assert not outcome_from_result(rollout, {"verdict": "pass", "t": 120.0}).rolled_back
    with pytest.raises(ValueError, match="not a tick"):
        outcome_from_result(rollout, {"verdict": "rollback", "t": 44.0})
    with pytest.raises(ValueError, match="disagree"):
        outcome_from_result(rollout, {**result, "canary_total": 149})
    assert outcome_from_result(rollout, {**result, "canary_total": 150}).tick == 2


def test_summary_counts_attribution_and_medians() -> None:
    records = [
        report.compact(Outcome(tick=3, exposure=300, t=60.0, breaches=(("errors", None),))),
        report.compact(
            Outcome(tick=5, exposure=500, t=90.0, breaches=(("errors", None), ("latency", None)))
        ),
        report.compact(Outcome(tick=1, exposure=100, t=30.0, breaches=(("latency", None),))),
        report.compact(Outcome()),
    ]
    s = report.summarise(records, ("errors", None))
    assert (s.runs, s.rollbacks, s.attributed, s.misattributed) == (4, 3, 2, 2)
    assert s.median_exposure == 400.0
    assert s.median_minutes == 1.25
    none = report.summarise([report.compact(Outcome())] * 3, ("errors", None))
    assert math.isinf(none.median_exposure)
    low, high = report.wilson(5, 100)
    assert low == pytest.approx(0.0215, abs=1e-4)
    assert high == pytest.approx(0.1118, abs=1e-4)


def test_exposure_counts_canary_requests_up_to_the_rollback_tick() -> None:
    rollout = errors_rollout([[0, 0]] * 4, [[90, 10], [80, 20], [70, 30], [60, 40]])
    assert int(rollout.requests()[CANARY, 2]) == 60
