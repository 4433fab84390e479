"""The simulated model's draws match its options (seeded, so each run is the same run).

Tolerances are about four standard errors wide: loose enough for any seed, tight enough
that an option that were ignored (its default used instead) fails the test.
"""

from __future__ import annotations

import math
import random
import statistics

from canary.sim.behaviour import SimulatedModel
from canary.sim.config import SimConfig

N = 20_000


def model(seed: int = 1, **changes: object) -> SimulatedModel:
    return SimulatedModel(SimConfig(seed=seed, **changes))  # type: ignore[arg-type]


def within(observed: float, expected: float, n: int, sds: float = 4.0) -> bool:
    return abs(observed - expected) <= sds * math.sqrt(expected * (1 - expected) / n)


def test_error_rate_gives_that_share_of_500s_without_predictions() -> None:
    sim = model(error_rate=0.07)
    outcomes = [sim.respond(["a"]) for _ in range(N)]
    failed = [o for o in outcomes if o.status == 500]
    assert within(len(failed) / N, 0.07, N)
    assert all(o.predictions == () for o in failed)
    assert all(len(o.predictions) == 1 for o in outcomes if o.status == 200)
    assert {o.status for o in outcomes} == {200, 500}


def test_no_errors_by_default() -> None:
    sim = model()
    assert all(sim.respond(["a"]).status == 200 for _ in range(2000))


def test_selection_rate_follows_each_group_and_the_default_for_others() -> None:
    sim = model(positive_rate=0.5, group_positive_rate={"a": 0.6, "b": 0.15})
    for group, expected in [("a", 0.6), ("b", 0.15), ("other", 0.5)]:
        predictions = [p for _ in range(N // 10) for p in sim.respond([group] * 10).predictions]
        assert all(p.group == group for p in predictions)
        rate = sum(p.predicted for p in predictions) / len(predictions)
        assert within(rate, expected, len(predictions)), (group, rate)


def test_accuracy_follows_each_group() -> None:
    sim = model(accuracy=0.9, group_accuracy={"b": 0.7})
    for group, expected in [("a", 0.9), ("b", 0.7)]:
        predictions = sim.respond([group] * N).predictions
        rate = sum(p.correct for p in predictions) / N
        assert within(rate, expected, N), (group, rate)


def test_label_fraction_is_the_share_of_predictions_ever_labelled() -> None:
    predictions = model(label_fraction=0.25).respond(["a"] * N).predictions
    assert within(sum(p.labelled for p in predictions) / N, 0.25, N)
    assert all(p.labelled for p in model().respond(["a"] * 1000).predictions)


def test_slow_tail_moves_p99_but_not_the_median() -> None:
    base = model(latency_ms=5.0, jitter_ms=1.0)
    tail = model(latency_ms=5.0, jitter_ms=1.0, tail_prob=0.03, tail_ms=400.0)
    base_ms = sorted(base.latency_s() * 1000 for _ in range(N))
    tail_ms = sorted(tail.latency_s() * 1000 for _ in range(N))
    p50 = N // 2
    p99 = int(N * 0.99)
    assert abs(statistics.median(tail_ms) - statistics.median(base_ms)) < 0.5
    assert base_ms[p99] < 15.0
    assert tail_ms[p99] > 400.0
    share_slow = sum(ms > 400.0 for ms in tail_ms) / N
    assert within(share_slow, 0.03, N)
    assert min(base_ms) >= 5.0  # the base latency is a floor
    assert 5.5 < base_ms[p50] < 5.9  # 5 ms + exponential(mean 1 ms): median 5 + ln 2


def test_same_seed_same_outcomes_and_different_seed_different_outcomes() -> None:
    cfg = {"error_rate": 0.1, "group_positive_rate": {"a": 0.5}}
    first = model(seed=3, **cfg)
    second = model(seed=3, **cfg)
    other = model(seed=4, **cfg)
    a = [first.respond(["a", "b"]) for _ in range(200)]
    b = [second.respond(["a", "b"]) for _ in range(200)]
    c = [other.respond(["a", "b"]) for _ in range(200)]
    assert a == b
    assert a != c


def test_injected_generator_is_used() -> None:
    rng = random.Random(5)
    expected = random.Random(5).random() < 0.5
    sim = SimulatedModel(SimConfig(error_rate=0.5, latency_ms=0, jitter_ms=0), rng)
    assert (sim.respond(["a"]).status == 500) is expected
