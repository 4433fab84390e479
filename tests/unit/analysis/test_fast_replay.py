"""The compiled replay reader gives exactly what the strict reader gives, or steps aside.

Every case is replayed twice: through ``replay_lines`` (the compiled reader, which falls back
to the strict one when it declines a file) and through ``strict_replay_lines`` (the reference),
with and without ``--ticks``. The outputs are compared as JSON text, so every float must be
equal to the last bit (``repr`` round-trips) and every error message must be the same. Each
case also says whether the compiled reader must take it, so the comparison cannot pass by
the compiled reader quietly declining everything.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from benchmarks.sim.rollout import to_replay_lines
from benchmarks.sim.scenarios import all_scenarios, scenario
from benchmarks.sim.simulate import simulate
from canary.analysis.analyzer import MAX_BLOCK
from canary.analysis.fast_replay import fast_run
from canary.analysis.replay import replay_lines, strict_replay_lines
from canary.core.policy import Policy
from canary.errors import ReplayError
from tests.unit.analysis.rollouts import Arm, four_metric_policy, policy_with, rollout

POLICY = four_metric_policy()

# The shapes the four-metric policy does not have: a sliced count metric (the benchmark's
# errors_by_group) and a sliced histogram.
SLICED = policy_with("""
analysis:
  alpha: 0.05
  metrics:
    - {name: errors_by_group, kind: ratio, events: e, total: t, worse_when: higher,
       slice_by: group}
    - {name: latency_by_group, kind: histogram, buckets: d_bucket, slice_by: group}
  fairness:
    - {name: approval_parity, positives: p, total: t, slice_by: group, max_gap_increase: 0.05}
""")


def _lines(seed: int, ticks: int = 80, **kwargs: Any) -> list[str]:
    return rollout(np.random.default_rng(seed), ticks=ticks, **kwargs)


def _edit(lines: list[str], index: int, change: Callable[[dict[str, Any]], object]) -> list[str]:
    out = list(lines)
    obj = json.loads(out[index])
    change(obj)
    out[index] = json.dumps(obj)
    return out


def _edit_all(lines: list[str], change: Callable[[dict[str, Any]], object]) -> list[str]:
    out = list(lines)
    for index in range(len(out)):
        out = _edit(out, index, change)
    return out


def _sliced(lines: list[str]) -> list[str]:
    """The four-metric rollout rewritten for SLICED: the positive predictions per group
    stand for errors per group too, the pooled latency buckets are split into two slices."""

    def change(obj: dict[str, Any]) -> None:
        metrics = obj["metrics"]
        new: dict[str, Any] = {"errors_by_group": {}, "latency_by_group": {}}
        for arm in ("baseline", "canary"):
            new["errors_by_group"][arm] = metrics["approval_parity"][arm]
            buckets = metrics["latency"][arm]["buckets"]
            half = [[le, count // 2] for le, count in buckets]
            rest = [[le, count - count // 2] for le, count in buckets]
            new["latency_by_group"][arm] = {
                "slices": {"x": {"buckets": half}, "y": {"buckets": rest}}
            }
        new["approval_parity"] = metrics["approval_parity"]
        obj["metrics"] = new

    return _edit_all(lines, change)


def _zero_start(lines: list[str], count: int) -> list[str]:
    """``count`` ticks with no data before the rollout (every count 0, same shape)."""

    def zero(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: zero(item) for key, item in value.items()}
        if isinstance(value, list):
            return (
                [value[0], 0]
                if len(value) == 2 and not isinstance(value[0], list)
                else [zero(item) for item in value]
            )
        return 0 if isinstance(value, int | float) else value

    first = json.loads(lines[0])
    head = []
    for k in range(count):
        head.append(
            json.dumps({"t": 5.0 * (k + 1), "canary_weight": 0, "metrics": zero(first["metrics"])})
        )
    return head + _edit_all(lines, lambda o: o.update(t=o["t"] + 5.0 * count))


def _fractional(obj: dict[str, Any]) -> None:
    """Errors as fractions (a rate times a duration), latency counts written as floats."""
    for arm in obj["metrics"]["errors"].values():
        arm["events"] += 0.25
        arm["total"] += 0.5
    for arm in obj["metrics"]["latency"].values():
        arm["buckets"] = [[le, float(count)] for le, count in arm["buckets"]]


def _outcome(
    reader: Callable[..., dict[str, Any]], policy: Policy, lines: list[str], ticks: bool
) -> str:
    try:
        return json.dumps(reader(policy, lines, "r.jsonl", ticks=ticks))
    except ReplayError as exc:
        return f"error: {exc}"


def _both(policy: Policy, lines: list[str]) -> list[str]:
    """Both readers agree with and without ticks; the two outcomes."""
    outcomes = []
    for ticks in (False, True):
        got = _outcome(replay_lines, policy, lines, ticks)
        assert got == _outcome(strict_replay_lines, policy, lines, ticks)
        outcomes.append(got)
    return outcomes


def _check(policy: Policy, lines: list[str], fast: bool) -> list[str]:
    """``_both``, and the compiled reader took the file iff ``fast``."""
    assert (fast_run(policy, lines, full=False) is not None) is fast
    return _both(policy, lines)


def _verdict(outcome: str) -> str:
    return "error" if outcome.startswith("error") else str(json.loads(outcome)["verdict"])


# --- files the compiled reader takes ---------------------------------------------------------


def _ramp(k: int) -> float:
    return 0.05 if k < 30 else 0.25 if k < 60 else 0.5


READ_FAST: list[tuple[str, Policy, Callable[[], list[str]], str]] = [
    ("a/a at 5%", POLICY, lambda: _lines(1), "inconclusive"),
    ("a/a on a ramp", POLICY, lambda: _lines(2, share=_ramp), "inconclusive"),
    ("errors x4", POLICY, lambda: _lines(3, canary=Arm(error_rate=0.04)), "rollback"),
    (
        "slow tail",
        POLICY,
        lambda: _lines(4, canary=Arm(latency=[0.2, 0.3, 0.25, 0.1, 0.05, 0.05, 0.05]), share=_ramp),
        "rollback",
    ),
    (
        "accuracy drop in one group",
        POLICY,
        lambda: _lines(5, canary=Arm(accuracy={"a": 0.9, "b": 0.7, "c": 0.9}), share=_ramp),
        "rollback",
    ),
    (
        "selection rate of one group halved",
        POLICY,
        lambda: _lines(6, canary=Arm(selection={"a": 0.3, "b": 0.3, "c": 0.12}), share=_ramp),
        "rollback",
    ),
    ("sliced shapes, a/a", SLICED, lambda: _sliced(_lines(7, share=_ramp)), "inconclusive"),
    (
        "sliced shapes, one group's rate x1.7",
        SLICED,
        lambda: _sliced(
            _lines(8, canary=Arm(selection={"a": 0.3, "b": 0.5, "c": 0.3}), share=_ramp)
        ),
        "rollback",
    ),
    ("no data for the first ticks", POLICY, lambda: _zero_start(_lines(9), 4), "inconclusive"),
    (
        "no data first, sliced",
        SLICED,
        lambda: _zero_start(_sliced(_lines(10)), 3),
        "inconclusive",
    ),
    (
        "blank lines, keys reordered, unknown metric and key",
        POLICY,
        lambda: [
            "",
            *[
                json.dumps(
                    dict(reversed(list(json.loads(line).items())))
                    | {"note": [1, "x"], "metrics": json.loads(line)["metrics"] | {"x": {"y": 1}}}
                )
                if k % 3 == 0
                else line
                for k, line in enumerate(_lines(11))
            ],
            "   ",
        ],
        "inconclusive",
    ),
    (
        "fractional counts and counts written as floats",
        POLICY,
        lambda: _edit_all(_lines(12, 30), _fractional),
        "inconclusive",
    ),
]


@pytest.mark.parametrize(
    ("policy", "make", "verdict"), [case[1:] for case in READ_FAST], ids=[c[0] for c in READ_FAST]
)
def test_the_compiled_reader_gives_exactly_the_strict_readers_output(
    policy: Policy, make: Callable[[], list[str]], verdict: str
) -> None:
    outcomes = _check(policy, make(), fast=True)
    assert _verdict(outcomes[0]) == verdict


@pytest.mark.parametrize("name", [s.name for s in all_scenarios()])
def test_every_detection_benchmark_scenario_reads_the_same_either_way(name: str) -> None:
    """The detection benchmark's simulator (bursts, ramps, delayed labels, regressions of
    errors, latency tails, accuracy and selection rates in one group) under its own policies:
    one rollout per scenario, taken by the compiled reader, identical outputs."""
    found = scenario(name)
    rollout_ = simulate(found.config, np.random.default_rng(sum(map(ord, name))))
    _check(found.policy(), to_replay_lines(rollout_), fast=True)


def test_a_rollout_longer_than_one_block_is_identical_block_by_block() -> None:
    # errors x1.4 at a 2% share: the evidence crosses in the second block (tick 588)
    lines = _lines(14, ticks=600, share=lambda k: 0.02, canary=Arm(error_rate=0.014))
    fast_only, with_ticks = _check(POLICY, lines, fast=True)
    result = json.loads(fast_only)
    assert result["verdict"] == "rollback"
    assert result["tick"] > MAX_BLOCK
    assert len(json.loads(with_ticks)["ticks"]) == result["tick"]


# --- files it declines: the strict reader's result or error, unchanged ----------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], object]:
    def change(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = obj["metrics"]
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


BASE = _lines(20, ticks=12)
DECLINED: list[tuple[str, list[str], str]] = [
    ("counts go backwards", _edit(BASE, 6, _set("errors.baseline.total", 5)), "error"),
    ("a negative count", _edit(BASE, 4, _set("errors.canary.events", -1)), "error"),
    ("a metric missing", _edit(BASE, 3, lambda o: o["metrics"].pop("latency")), "error"),
    ("invalid JSON", [*BASE[:2], BASE[2][:-3], *BASE[3:]], "error"),
    ("t goes back", _edit(BASE, 5, lambda o: o.update(t=1.0)), "error"),
    ("weight above 100", _edit(BASE, 2, lambda o: o.update(canary_weight=150)), "error"),
    ("a count that is true", _edit(BASE, 2, _set("errors.canary.total", True)), "error"),
    ("a count that is a string", _edit(BASE, 2, _set("errors.canary.total", "9")), "error"),
    (
        "a count too large for a float",
        [
            *BASE[:3],
            _edit(BASE, 3, _set("errors.canary.total", 987654321))[3].replace("987654321", "1e400"),
            *BASE[4:],
        ],
        "error",
    ),
    ("a bucket bound changed", _edit(BASE, 5, _set("latency.canary.buckets.2.0", 0.11)), "error"),
    (
        "a bucket bound written as true",
        _edit(BASE, 5, _set("latency.canary.buckets.5.0", True)),
        "error",
    ),
    (
        "+Inf written as Inf (allowed)",
        _edit(BASE, 5, _set("latency.canary.buckets.6.0", "Inf")),
        "inconclusive",
    ),
    (
        "+Inf written as a word",
        _edit(BASE, 5, _set("latency.canary.buckets.6.0", "many")),
        "error",
    ),
    (
        "a slice that appears later (allowed)",
        _edit_all(BASE[:4], lambda o: o["metrics"]["accuracy"]["canary"]["slices"].pop("c"))
        + BASE[4:],
        "inconclusive",
    ),
    (
        "a slice that vanishes",
        _edit(BASE, 7, lambda o: o["metrics"]["accuracy"]["canary"]["slices"].pop("c")),
        "error",
    ),
    ("two ticks on one line", [*BASE[:3], BASE[3] + ", " + BASE[4], *BASE[5:]], "error"),
    ("a line that is not an object", [*BASE[:3], "[1, 2]", *BASE[3:]], "error"),
    ("a null count", _edit(BASE, 1, _set("approval_parity.canary.slices.a.events", None)), "error"),
]


@pytest.mark.parametrize(
    ("lines", "verdict"), [case[1:] for case in DECLINED], ids=[c[0] for c in DECLINED]
)
def test_files_the_compiled_reader_declines_get_the_strict_readers_answer(
    lines: list[str], verdict: str
) -> None:
    outcomes = _check(POLICY, lines, fast=False)
    assert _verdict(outcomes[0]) == verdict
    if verdict == "error":
        assert outcomes[0].startswith("error: r.jsonl:")


def test_a_negative_count_before_any_data_is_read_as_the_strict_reader_reads_it() -> None:
    """Before a metric is set up the strict reader does not check its counts; the compiled
    reader must neither accept nor reject what the strict one would not."""
    lines = _zero_start(BASE, 2)
    lines = _edit(lines, 0, _set("errors.canary.events", -3))
    outcomes = _check(POLICY, lines, fast=False)
    assert _verdict(outcomes[0]) == "inconclusive"


def test_counts_beyond_float_precision_before_any_data_are_left_to_the_strict_reader() -> None:
    """Before setup the strict reader reads a histogram's baseline totals as JSON integers:
    -10**20 and 10**20 + 1 add up to 1 (data), where floats add up to 0 (no data yet), and it
    rejects the negative count. The compiled reader must not read such a tick as "no data":
    it declines files with negative counts, and a metric's own setup check that raises makes
    it decline too, so the answer is the strict reader's error."""
    lines = _zero_start(_sliced(_lines(22, ticks=6)), 1)

    def huge(obj: dict[str, Any]) -> None:
        slices = obj["metrics"]["latency_by_group"]["baseline"]["slices"]
        slices["x"]["buckets"][-1][1] = -(10**20)
        slices["y"]["buckets"][-1][1] = 10**20 + 1

    outcomes = _check(SLICED, _edit(lines, 0, huge), fast=False)
    assert outcomes[0].startswith("error: r.jsonl:1: ")
    assert "negative" in outcomes[0]


def test_random_corruption_gives_the_same_answer_either_way() -> None:
    """Seeded random edits (counts changed, slices dropped, metrics removed, lines swapped):
    whatever the strict reader answers, the compiled reader answers too."""
    rng = random.Random(11)
    base = _lines(21, ticks=16)
    kinds = {"fast": 0, "declined": 0}
    for _ in range(40):
        lines = list(base)
        for _ in range(rng.randrange(1, 3)):
            index = rng.randrange(len(lines))
            obj = json.loads(lines[index])
            name = rng.choice(sorted(obj["metrics"]))
            arm = obj["metrics"][name][rng.choice(["baseline", "canary"])]
            kind = rng.randrange(6)
            if kind == 0 and "buckets" in arm:
                bucket = arm["buckets"][rng.randrange(len(arm["buckets"]))]
                bucket[1] = max(0, bucket[1] + rng.choice([-50, -1, 1, 50]))
            elif kind == 1 and "slices" in arm:
                counts = arm["slices"][rng.choice(sorted(arm["slices"]))]
                counts["events"] = max(0, counts["events"] + rng.choice([-3, 3, 10**6]))
            elif kind == 2 and "events" in arm:
                arm["total"] = max(0, arm["total"] + rng.choice([-100, 100]))
            elif kind == 3 and "slices" in arm:
                arm["slices"].pop(rng.choice(sorted(arm["slices"])))
            elif kind == 4:
                obj["metrics"].pop(name)
            else:
                lines[index], lines[-1] = lines[-1], lines[index]
                continue
            lines[index] = json.dumps(obj)
        taken = fast_run(POLICY, lines, full=False) is not None
        kinds["fast" if taken else "declined"] += 1
        _both(POLICY, lines)
    assert kinds["fast"] >= 3
    assert kinds["declined"] >= 10
