"""The soak benchmark's judgments, on inputs small enough to work out by hand.

The soak run passes or fails a controller on a missed-tick count, a memory slope and
histogram quantiles; if those computations were wrong, a leak or a stalled rollout would
pass unnoticed. Every expected value below is computed in the comment beside it.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.soak import (
    RunResult,
    Sample,
    bucket_delta,
    count_error_lines,
    histogram_max,
    histogram_quantile,
    judge,
    reason_shape,
    schedule_times,
    slope_per_minute,
    tick_times,
)

# --- missed ticks, ticks due, lateness --------------------------------------------------------


def test_punctual_rollout_misses_nothing_and_its_lags_are_offsets_from_due_times() -> None:
    # Scheduled at 100, interval 10, window ends at 135: due at 100, 110, 120, 130 (4).
    ticks = tick_times({"a": [100.5, 110.2, 120.1, 130.4]}, {"a": 100.0}, 10.0, 95.0, 135.0)
    assert (ticks.run, ticks.due, ticks.missed) == (4, 4, 0)
    # Lags 0.5, 0.2, 0.1, 0.4 -> sorted 0.1, 0.2, 0.4, 0.5; nearest rank int(q * 4).
    assert ticks.lag_p50_s == pytest.approx(0.4)
    assert ticks.lag_p90_s == pytest.approx(0.5)
    assert ticks.lag_max_s == pytest.approx(0.5)
    # Gaps between ticks 9.7, 9.9, 10.3; the edges (0.5 and 4.6) are not tick-to-tick gaps.
    assert ticks.gap_p99_s == pytest.approx(10.3)
    # The longest gap counts the edges too: none is longer than 10.3.
    assert ticks.max_gap_s == pytest.approx(10.3)
    assert ticks.first_due_s == pytest.approx(5.0)  # launched at 95, first due at 100


def test_a_gap_of_more_than_two_intervals_is_a_missed_tick_and_two_exactly_is_not() -> None:
    starts = {
        "late": [101.0, 131.0],  # 101 -> 131: 30 s > 20 s, one missed
        "edge": [100.0, 120.0, 130.0],  # 100 -> 120: exactly 20 s, not missed
        "silent": [],  # 100 -> end 135: 35 s without a tick, one missed
        "stopped": [100.1],  # 100.1 -> end 135: 34.9 s, one missed
    }
    scheduled = dict.fromkeys(starts, 100.0)
    ticks = tick_times(starts, scheduled, 10.0, 99.0, 135.0)
    assert ticks.missed == 3
    assert ticks.run == 2 + 3 + 0 + 1
    assert ticks.due == 4 * 4  # each: floor(35 / 10) + 1
    assert ticks.max_gap_s == pytest.approx(35.0)
    assert ticks.worst == "silent"
    # Lags: late 1, 1; edge 0, 0, 0; stopped 0.1 -> sorted 0,0,0,0.1,1,1; max 1.
    assert ticks.lag_max_s == pytest.approx(1.0)
    assert ticks.lag_p50_s == pytest.approx(0.1)  # rank int(0.5 * 6) = 3


def test_a_late_tick_is_measured_from_its_own_due_time_not_wrapped_around() -> None:
    # Rollouts scheduled 40 ms apart: a tick 30 ms after the first rollout's due time but
    # 10 ms *before* the anchor of a later one would wrap to 14.99 s on a shared anchor.
    scheduled = {"a": 1000.00, "b": 1000.04}
    starts = {"a": [1000.03, 1015.03], "b": [1000.05, 1015.06]}
    ticks = tick_times(starts, scheduled, 15.0, 999.0, 1020.0)
    assert ticks.lag_max_s == pytest.approx(0.03)
    assert ticks.schedule_spread_s == pytest.approx(0.04)
    assert ticks.missed == 0


def test_ticks_outside_the_window_are_not_counted_and_unlogged_rollouts_start_at_first() -> None:
    # "a": a tick before its scheduling (an earlier daemon's) and one after the end.
    # "b": no schedule time in the log: due from its first tick at 102 -> 102, 112, 122.
    starts = {"a": [90.0, 100.0, 110.0, 140.0], "b": [102.0, 112.0, 122.0]}
    ticks = tick_times(starts, {"a": 100.0}, 10.0, 95.0, 125.0)
    assert ticks.run == 2 + 3
    assert ticks.due == 3 + 3  # a: floor(25 / 10) + 1; b: floor(23 / 10) + 1
    assert ticks.missed == 0  # a: last tick 110, end 125: 15 s


def test_a_rollout_that_ended_is_due_no_more_ticks_after_it_ended() -> None:
    # Rolled back at 112 (its last tick, at 110, decided it): the 23 s to the end of the
    # window are not a missed tick, and only 100 and 110 were due.
    ticks = tick_times({"a": [100.2, 110.3]}, {"a": 100.0}, 10.0, 95.0, 135.0, {"a": 112.0})
    assert (ticks.run, ticks.due, ticks.missed) == (2, 2, 0)
    # Without the end time the same ticks show a missed tick: 110.3 -> 135 is 24.7 s > 20 s.
    assert tick_times({"a": [100.2, 110.3]}, {"a": 100.0}, 10.0, 95.0, 135.0).missed == 1


def test_reasons_that_differ_only_in_numbers_count_as_one() -> None:
    first = reason_shape("rolled_back: latency: e-value 21.5 >= 20 after 3.1e+04 requests")
    second = reason_shape("rolled_back: latency: e-value 40 >= 20 after 29000 requests")
    assert first == second == "rolled_back: latency: e-value # >= # after # requests"


# --- memory slope -----------------------------------------------------------------------------


def test_slope_is_the_least_squares_fit_in_mb_per_minute() -> None:
    assert slope_per_minute([0.0, 60.0, 120.0], [100.0, 101.0, 102.0]) == pytest.approx(1.0)
    # Mean t 45, mean v 11.5; covariance sum 67.5 - 7.5 - 7.5 + 67.5 = 120; spread 4500:
    # 120 / 4500 MB/s = 1.6 MB/min.
    assert slope_per_minute([0.0, 30.0, 60.0, 90.0], [10.0, 12.0, 11.0, 13.0]) == pytest.approx(1.6)
    assert math.isnan(slope_per_minute([5.0], [1.0]))
    assert math.isnan(slope_per_minute([5.0, 5.0], [1.0, 2.0]))


def _sample(t: float, rss: float) -> Sample:
    return Sample(
        t=t,
        rss_mb=rss,
        cpu_s=t / 10,
        threads=15,
        load1=1.0,
        machine_busy_s=t,
        machine_total_s=2 * t,
        ticks_ok=t,
        ticks_error=0.0,
        buckets=((0.1, t), (math.inf, t)),
        duration_sum=t / 20,
        errors={},
        measurement_errors=0.0,
    )


def _result(samples: list[Sample]) -> RunResult:
    ticks = tick_times({"r": [0.0]}, {"r": 0.0}, 15.0, 0.0, 10.0)
    return RunResult(
        rollouts=1,
        minutes=samples[-1].t / 60,
        interval=15.0,
        samples=samples,
        ticks=ticks,
        phases={"progressing": 1},
        db_bytes=0,
        measurements=1,
        stop_seconds=1.0,
        stop_hung=False,
        load_sent=0,
        load_failed=0,
        load_unanswered=0,
        load_avg=((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
        log_errors=0,
        rps=100.0,
        scrape="5s",
        growth=[],
        ended={},
        ended_examples=[],
    )


def test_judge_ignores_warm_up_growth_but_fails_steady_growth() -> None:
    times = [10.0 * i for i in range(61)]  # ten minutes, a sample every 10 s
    # +30 MB in the first two minutes (warm-up: min(120, 0.2 * 600)), flat after.
    warming = [_sample(t, 100.0 + min(t, 120.0) / 4) for t in times]
    checks = judge(_result(warming), max_slope=1.0)
    assert checks.warmup_s == pytest.approx(120.0)
    assert checks.slope_checked
    assert checks.slope_mb_per_min == pytest.approx(0.0, abs=1e-9)
    assert checks.ok
    # 2 MB/min all along: fails the 1 MB/min limit.
    leaking = [_sample(t, 100.0 + t / 30) for t in times]
    checks = judge(_result(leaking), max_slope=1.0)
    assert checks.slope_mb_per_min == pytest.approx(2.0)
    assert not checks.passed["memory"]


def test_judge_does_not_call_a_short_run_a_leak() -> None:
    # Three minutes: 2.4 min after warm-up, under the five needed to judge a slope.
    short = [_sample(10.0 * i, 100.0 + i) for i in range(19)]
    checks = judge(_result(short), max_slope=1.0)
    assert not checks.slope_checked
    assert checks.passed["memory"]


# --- histograms -------------------------------------------------------------------------------

BUCKETS = ((0.1, 10.0), (0.5, 30.0), (math.inf, 40.0))


def test_histogram_quantile_interpolates_inside_its_bucket_like_prometheus() -> None:
    # Rank 20 of 40 lies in (0.1, 0.5] holding ranks 11-30: 0.1 + 0.4 * (20 - 10) / 20.
    assert histogram_quantile(0.5, BUCKETS) == pytest.approx((0.3, 0.1, 0.5))
    # Rank 4 in (0, 0.1]: 0.1 * 4 / 10.
    assert histogram_quantile(0.1, BUCKETS) == pytest.approx((0.04, 0.0, 0.1))
    # Rank 39.6 is in +Inf: the highest finite bound, and the bucket says so.
    assert histogram_quantile(0.99, BUCKETS) == (0.5, 0.5, math.inf)
    assert all(math.isnan(v) for v in histogram_quantile(0.5, ((0.1, 0.0), (math.inf, 0.0))))


def test_histogram_max_and_delta() -> None:
    assert histogram_max(((0.1, 10.0), (0.5, 30.0), (1.0, 30.0), (math.inf, 30.0))) == (0.1, 0.5)
    assert histogram_max(BUCKETS) == (0.5, math.inf)
    later = ((0.1, 15.0), (0.5, 40.0), (math.inf, 52.0))
    assert bucket_delta(later, BUCKETS) == ((0.1, 5.0), (0.5, 10.0), (math.inf, 12.0))


# --- the daemon's log ------------------------------------------------------------------------


def test_schedule_times_come_from_the_last_resumed_event_of_each_rollout() -> None:
    def event(name: str, rollout: str, at: str, level: str = "info") -> str:
        return json.dumps({"event": name, "rollout": rollout, "timestamp": at, "level": level})

    lines = [
        "a line that is not JSON",
        event("rollout.resumed", "a", "2024-01-01T00:00:10.500000Z"),
        event("rollout.resumed", "b", "2024-01-01T00:00:11Z"),
        event("tick.failed", "a", "2024-01-01T00:00:12Z", level="error"),
        event("rollout.resumed", "a", "2024-01-01T00:01:00Z"),
    ]
    # 2024-01-01T00:00:00Z is 1704067200 seconds after the epoch.
    assert schedule_times(lines) == {"a": 1704067260.0, "b": 1704067211.0}
    assert count_error_lines(lines) == 1
