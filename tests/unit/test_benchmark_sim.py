"""The detection benchmark's simulator and replay files: rates, cumulative counts, format."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.sim.histogram import bucket_probabilities, histogram_quantile
from benchmarks.sim.rollout import (
    BASELINE,
    CANARY,
    INF_LABEL,
    HistogramCounts,
    RatioCounts,
    ReplayFormatError,
    Rollout,
    from_replay_lines,
    read_replay,
    to_replay_lines,
    write_replay,
)
from benchmarks.sim.scenarios import BASELINE as BASE_ARM
from benchmarks.sim.scenarios import all_scenarios, scenario, schedule_of, threshold_bounds
from benchmarks.sim.simulate import ArmParams, Bursts, SimConfig, simulate

CANARY_ARM = ArmParams(
    error_rate=0.03,
    tail_fraction=0.02,
    accuracy={"a": 0.80, "b": 0.70, "c": 0.95},
    selection={"a": 0.40, "b": 0.20, "c": 0.10},
)


def _config(**kwargs: object) -> SimConfig:
    config = SimConfig(baseline=BASE_ARM, canary=CANARY_ARM, schedule=((0.0, 30.0),), rps=200.0)
    return replace(config, **kwargs)  # type: ignore[arg-type]


def _within(observed: float, expected: float, n: float, sds: float = 4.5) -> bool:
    """|observed - expected| within ``sds`` binomial standard errors of a proportion."""
    return abs(observed - expected) <= sds * math.sqrt(expected * (1 - expected) / n)


@pytest.fixture(scope="module")
def rollout() -> Rollout:
    return simulate(_config(), np.random.default_rng(12345))


def test_rates_match_the_configuration(rollout: Rollout) -> None:
    config = _config()
    requests = rollout.requests()[:, -1]
    n = requests.sum()
    assert abs(n - config.rps * config.duration) < 5 * math.sqrt(config.rps * config.duration)
    assert _within(requests[CANARY] / n, 0.30, n)
    errors = rollout.ratio("errors")
    for arm, params in ((BASELINE, BASE_ARM), (CANARY, CANARY_ARM)):
        assert _within(errors.events[arm, -1, 0] / requests[arm], params.error_rate, requests[arm])
        fairness = rollout.ratio("approval_parity")
        for j, group in enumerate(fairness.slice_names()):
            total = fairness.total[arm, -1, j]
            share = config.groups[str(group)]
            assert _within(total / requests[arm], share, requests[arm])
            assert _within(fairness.events[arm, -1, j] / total, params.selection[str(group)], total)
        accuracy = rollout.ratio("accuracy")
        for j, group in enumerate(accuracy.slice_names()):
            labelled = accuracy.total[arm, -1, j]
            assert _within(
                accuracy.events[arm, -1, j] / labelled, params.accuracy[str(group)], labelled
            )
        hist = rollout.histogram("latency")
        probs = np.cumsum(
            bucket_probabilities(config.latency.cdf(config.buckets, params.tail_fraction))
        )
        for j in range(len(config.buckets)):
            expected = float(min(probs[j], 1 - 1e-9))
            if 1e-4 < expected < 1 - 1e-4:
                assert _within(hist.counts[arm, -1, j] / requests[arm], expected, requests[arm])


def test_labels_arrive_after_the_delay_and_at_the_coverage(rollout: Rollout) -> None:
    config = _config()
    labelled = rollout.ratio("accuracy").total.sum(axis=2)
    first = int(config.label_delay[0] // config.interval)
    assert labelled[:, : first - 1].sum() == 0
    assert labelled[:, first + 2].sum() > 0
    # Requests served before (end - max delay) have all their labels by the end.
    served_early = rollout.requests()[
        :, rollout.ticks - 1 - int(config.label_delay[1] // config.interval)
    ]
    ratio = labelled[:, -1] / served_early
    assert np.all(ratio >= config.label_coverage * 0.97)
    assert np.all(labelled[:, -1] <= rollout.requests()[:, -1])


def test_counts_are_cumulative_monotone_and_consistent(rollout: Rollout) -> None:
    for name, series in rollout.metrics.items():
        arrays = (
            [series.events, series.total] if isinstance(series, RatioCounts) else [series.counts]
        )
        for arr in arrays:
            assert arr.dtype == np.int64
            assert np.all(np.diff(arr, axis=1) >= 0), name
            assert np.all(arr >= 0)
        if isinstance(series, RatioCounts):
            assert np.all(series.events <= series.total), name
        else:
            assert np.all(np.diff(series.counts, axis=2) >= 0), "buckets are cumulative in le"
    requests = rollout.requests()
    assert np.array_equal(rollout.histogram("latency").counts[..., -1], requests)
    assert np.array_equal(rollout.ratio("approval_parity").total.sum(axis=2), requests)


def test_format_is_exactly_the_replay_format(rollout: Rollout) -> None:
    lines = to_replay_lines(rollout)
    assert len(lines) == rollout.ticks == 240
    previous = None
    for k, line in enumerate(lines):
        obj = json.loads(line)
        assert set(obj) == {"t", "canary_weight", "metrics"}
        assert obj["t"] == pytest.approx(15.0 * (k + 1))
        assert obj["canary_weight"] == 30
        metrics = obj["metrics"]
        assert list(metrics) == ["errors", "latency", "accuracy", "approval_parity"]
        for arm in ("baseline", "canary"):
            assert set(metrics["errors"][arm]) == {"events", "total"}
            buckets = metrics["latency"][arm]["buckets"]
            assert set(metrics["latency"][arm]) == {"buckets"}
            assert buckets[-1][0] == INF_LABEL
            les = [b[0] for b in buckets[:-1]]
            assert all(isinstance(le, float) for le in les)
            assert les == sorted(les)
            counts = [b[1] for b in buckets]
            assert counts == sorted(counts)
            assert counts[-1] == metrics["errors"][arm]["total"]
            for name in ("accuracy", "approval_parity"):
                assert set(metrics[name][arm]) == {"slices"}
                assert set(metrics[name][arm]["slices"]) == {"a", "b", "c"}
                for cell in metrics[name][arm]["slices"].values():
                    assert set(cell) == {"events", "total"}
                    assert all(isinstance(v, int) for v in cell.values())
            if previous is not None:
                assert metrics["errors"][arm]["total"] >= previous["errors"][arm]["total"]
        previous = metrics


def test_replay_lines_round_trip(rollout: Rollout, tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    write_replay(rollout, path)
    back = read_replay(path)
    assert np.array_equal(back.t, rollout.t)
    assert np.array_equal(back.weight, rollout.weight)
    assert list(back.metrics) == list(rollout.metrics)
    for name, series in rollout.metrics.items():
        other = back.metrics[name]
        if isinstance(series, RatioCounts):
            assert isinstance(other, RatioCounts)
            assert other.slices == series.slices
            assert np.array_equal(other.events, series.events)
            assert np.array_equal(other.total, series.total)
        else:
            assert isinstance(other, HistogramCounts)
            assert other.bounds == series.bounds
            assert np.array_equal(other.counts, series.counts)
    assert np.array_equal(back.requests(), rollout.requests())


def test_same_seed_same_rollout_other_seed_other_rollout() -> None:
    config = _config(duration=600.0)
    a = to_replay_lines(simulate(config, np.random.default_rng(7)))
    b = to_replay_lines(simulate(config, np.random.default_rng(7)))
    c = to_replay_lines(simulate(config, np.random.default_rng(8)))
    assert a == b
    assert a != c


def test_error_bursts_hit_both_arms() -> None:
    config = _config(
        canary=BASE_ARM,
        bursts=Bursts(per_hour=8, min_duration=120, max_duration=240, error_rate=0.2),
    )
    rollout = simulate(config, np.random.default_rng(3))
    spans = rollout.meta["bursts"]
    assert spans, "a burst should happen in an hour at 8 per hour"
    starts = rollout.t - config.interval
    inside = np.zeros(rollout.ticks, dtype=bool)
    for start, end in spans:
        inside |= (starts >= start) & (rollout.t <= end)
    per_tick = np.diff(rollout.ratio("errors").events[..., 0], axis=1, prepend=0)
    volume = np.diff(rollout.requests(), axis=1, prepend=0)
    for arm in (BASELINE, CANARY):
        in_rate = per_tick[arm, inside].sum() / volume[arm, inside].sum()
        out_rate = per_tick[arm, ~inside].sum() / volume[arm, ~inside].sum()
        assert in_rate > 0.15
        assert out_rate < 0.03


def test_load_varies_when_asked() -> None:
    flat = simulate(_config(), np.random.default_rng(5))
    wavy = simulate(_config(load_amplitude=0.5), np.random.default_rng(5))

    def per_tick(r: Rollout) -> np.ndarray:
        return np.diff(r.requests().sum(axis=0), prepend=0)

    assert per_tick(wavy).std() > 3 * per_tick(flat).std()


def test_ramp_follows_the_policy_steps() -> None:
    ramp = scenario("aa_ramp")
    assert schedule_of(ramp.policy(), 3600.0) == (
        (0.0, 1.0),
        (900.0, 5.0),
        (1800.0, 25.0),
        (2700.0, 50.0),
    )
    rollout = simulate(ramp.config, np.random.default_rng(1))
    assert list(np.unique(rollout.weight)) == [1.0, 5.0, 25.0, 50.0]
    assert rollout.weight[59] == 1.0
    assert rollout.weight[60] == 5.0
    share = np.diff(rollout.requests(), axis=1, prepend=0)
    late = share[CANARY, 180:].sum() / share[:, 180:].sum()
    assert _within(late, 0.5, share[:, 180:].sum())


def test_every_scenario_uses_a_valid_policy_and_names_its_truth() -> None:
    scenarios = all_scenarios()
    assert len({s.name for s in scenarios}) == len(scenarios) == 10
    assert sum(s.is_null for s in scenarios) == 4
    for s in scenarios:
        names = s.policy().all_analysis_names()
        if s.policy_file in ("errors-only-5pct.yaml", "errors-strict-5pct.yaml"):
            assert names == ["errors"]
        else:
            assert set(names) == {"errors", "latency", "accuracy", "approval_parity"}
        if s.expected is not None:
            assert s.expected[0] in names
            assert s.config.weights().max() == 5.0
            assert s.config.duration == 3600.0


def test_the_errors_only_scenario_judges_the_same_rollouts() -> None:
    single, full = scenario("errors_2x_single"), scenario("errors_2x")
    assert single.seed_name == full.seed_name == "errors_2x"
    assert single.config == full.config
    assert single.policy_file != full.policy_file


def test_threshold_bounds_come_from_the_baseline_truth() -> None:
    config = scenario("errors_2x").config
    bounds = threshold_bounds(config)
    assert bounds[("errors", None)].max == pytest.approx(0.015)
    assert bounds[("accuracy", "b")].min == pytest.approx(1 - 1.5 * 0.13)
    assert bounds[("approval_parity", None)].min == 0.8
    p99 = config.latency.quantile(0.99, config.baseline.tail_fraction)
    assert float(config.latency.cdf(p99, config.baseline.tail_fraction)) == pytest.approx(0.99)
    assert bounds[("latency", None)].max == pytest.approx(1.5 * p99)


def test_p99_scenario_moves_the_tail_not_the_body() -> None:
    config = scenario("latency_p99").config
    lat, base, can = config.latency, config.baseline, config.canary
    assert lat.quantile(0.99, can.tail_fraction) > 1.6 * lat.quantile(0.99, base.tail_fraction)
    assert lat.quantile(0.5, can.tail_fraction) == pytest.approx(
        lat.quantile(0.5, base.tail_fraction), rel=0.01
    )
    assert lat.mean(can.tail_fraction) < 1.06 * lat.mean(base.tail_fraction)


def test_histogram_quantile_follows_prometheus() -> None:
    bounds = [0.1, 0.2, 0.5]
    assert histogram_quantile(0.5, bounds, [10, 90, 100, 100]) == pytest.approx(0.15)
    assert histogram_quantile(0.99, bounds, [10, 90, 100, 100]) == pytest.approx(0.47)
    # In the +Inf bucket Prometheus answers with the highest finite bound.
    assert histogram_quantile(0.99, bounds, [10, 90, 95, 100]) == pytest.approx(0.5)
    # The first bucket interpolates from zero; an empty histogram has no value.
    both = histogram_quantile(0.05, bounds, [[10, 90, 95, 100], [0, 0, 0, 0]])
    assert both[0] == pytest.approx(0.05)
    assert math.isnan(both[1])


def test_malformed_replay_lines_name_the_line() -> None:
    def line(t: int, baseline_total: int, events: int = 1) -> str:
        errors = {
            "baseline": {"events": events, "total": baseline_total},
            "canary": {"events": 0, "total": 2},
        }
        return json.dumps({"t": t, "canary_weight": 5, "metrics": {"errors": errors}})

    good, back = line(15, 10), line(30, 9)
    with pytest.raises(ReplayFormatError, match=r"f\.jsonl:2"):
        from_replay_lines([good, "{not json"], "f.jsonl")
    with pytest.raises(ReplayFormatError, match="backwards"):
        from_replay_lines([good, back], "f.jsonl")
    with pytest.raises(ReplayFormatError, match="t must increase"):
        from_replay_lines([good, good], "f.jsonl")
    negative = line(15, 10, events=-1)
    with pytest.raises(ReplayFormatError, match=r"f\.jsonl:1"):
        from_replay_lines([negative], "f.jsonl")
