"""The replay format: verdicts, and malformed files named with the line that is wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from canary.analysis.jsonform import JsonSnapshot
from canary.analysis.replay import LineReader, replay_file, replay_lines
from canary.analysis.snapshot import HistogramArm
from canary.errors import ReplayError
from tests.unit.analysis.rollouts import Arm, four_metric_policy, policy_with, rollout

POLICY = four_metric_policy()
KEYS = ["file", "verdict", "tick", "t", "canary_total", "breaches"]
BREACH_KEYS = ["metric", "slice", "e_value", "estimate", "interval"]


def lines_of(seed: int = 1, ticks: int = 6) -> list[str]:
    return rollout(np.random.default_rng(seed), ticks=ticks)


def edit(line: str, change: Callable[[dict[str, Any]], object]) -> str:
    obj = json.loads(line)
    change(obj)
    return json.dumps(obj)


def test_a_rollback_names_the_metric_with_the_output_shape_of_the_format() -> None:
    lines = rollout(np.random.default_rng(2), ticks=60, canary=Arm(error_rate=0.04))
    out = replay_lines(POLICY, lines, "r.jsonl")
    assert list(out) == KEYS
    assert out["verdict"] == "rollback"
    assert out["file"] == "r.jsonl"
    assert out["t"] == 15.0 * out["tick"]
    assert out["tick"] < 60
    assert (
        out["canary_total"]
        == json.loads(lines[out["tick"] - 1])["metrics"]["errors"]["canary"]["total"]
    )
    assert [list(b) for b in out["breaches"]] == [BREACH_KEYS] * len(out["breaches"])
    assert out["breaches"][0]["metric"] == "errors"
    assert out["breaches"][0]["slice"] is None
    assert out["breaches"][0]["e_value"] >= 20
    json.dumps(out, allow_nan=False)


def test_no_regression_and_too_little_data_is_inconclusive_and_ticks_are_listed() -> None:
    out = replay_lines(POLICY, lines_of(ticks=5), "a.jsonl", ticks=True)
    assert out["verdict"] == "inconclusive"
    assert out["tick"] == 5
    assert out["breaches"] == []
    assert [t["tick"] for t in out["ticks"]] == [1, 2, 3, 4, 5]
    assert set(out["ticks"][0]["metrics"]) == {"errors", "accuracy", "latency", "approval_parity"}


def test_enough_data_without_harm_passes() -> None:
    policy = policy_with("""
analysis:
  metrics:
    - {name: errors, kind: ratio, events: e, total: t, worse_when: higher,
       tolerance: {relative: 1.0}}
""")
    lines = []
    for k in range(1, 40):
        lines.append(
            json.dumps(
                {
                    "t": 15 * k,
                    "canary_weight": 50,
                    "metrics": {
                        "errors": {
                            "baseline": {"events": 100 * k, "total": 1000 * k},
                            "canary": {"events": 100 * k, "total": 1000 * k},
                        }
                    },
                }
            )
        )
    out = replay_lines(policy, lines, "p.jsonl")
    assert out["verdict"] == "pass"


@pytest.mark.parametrize(
    ("line", "change", "message"),
    [
        (2, None, "invalid JSON"),
        (3, lambda o: o["metrics"].pop("latency"), "metric 'latency' is missing"),
        (2, lambda o: o.pop("t"), "a tick needs 't'"),
        (2, lambda o: o.update(t=1.0), "t must be >= 0 and increase"),
        (4, lambda o: o["metrics"]["errors"]["canary"].update(events=-2), "negative"),
        (4, lambda o: o["metrics"]["errors"]["canary"].update(total="12"), "must be a number"),
        (4, lambda o: o["metrics"]["errors"]["canary"].update(total=True), "must be a number"),
        (5, lambda o: o["metrics"]["errors"]["baseline"].update(events=0, total=3), "backwards"),
        (
            3,
            lambda o: o["metrics"]["latency"]["canary"]["buckets"].reverse(),
            "bucket bounds must ascend",
        ),
        (
            3,
            lambda o: o["metrics"]["latency"]["canary"]["buckets"].pop(),
            'end with the "+Inf" bucket',
        ),
        (  # the 1.0 bound written as true: equal to 1 in Python, still not a number
            4,
            lambda o: o["metrics"]["latency"]["baseline"]["buckets"][5].__setitem__(0, True),
            "bucket bound must be a number, not true",
        ),
        (
            4,
            lambda o: o["metrics"]["accuracy"]["canary"].update(
                {"slices": {"a": {"events": 1, "total": 2, "extra": 3}}}
            ),
            "unknown key 'extra'",
        ),
        (
            2,
            lambda o: o["metrics"].update(
                accuracy={
                    "baseline": {"events": 1, "total": 2},
                    "canary": {"events": 1, "total": 2},
                }
            ),
            "no slices but the policy slices",
        ),
        (
            5,
            lambda o: o["metrics"]["approval_parity"]["canary"]["slices"]["a"].update(events=10**9),
            "exceeds",
        ),
    ],
)
def test_malformed_lines_are_named(
    line: int, change: Callable[[dict[str, Any]], object] | None, message: str
) -> None:
    lines = lines_of()
    if change is None:
        lines[line - 1] = lines[line - 1][:-5]
    else:
        lines[line - 1] = edit(lines[line - 1], change)
    with pytest.raises(ReplayError) as caught:
        replay_lines(POLICY, lines, "bad.jsonl")
    text = str(caught.value)
    assert text.startswith(f"bad.jsonl:{line}: ")
    assert message in text
    assert "\n" not in text


def test_blank_lines_are_skipped_but_count_for_line_numbers() -> None:
    lines = lines_of()
    lines.insert(2, "")
    lines[4] = edit(lines[4], lambda o: o["metrics"]["errors"]["canary"].update(events=-1))
    with pytest.raises(ReplayError, match=r"^b\.jsonl:5: "):
        replay_lines(POLICY, lines, "b.jsonl")


def test_an_empty_or_unreadable_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ReplayError, match=r"empty\.jsonl:1: no ticks"):
        replay_file(POLICY, empty)
    with pytest.raises(ReplayError, match=r"missing\.jsonl:0: cannot read"):
        replay_file(POLICY, tmp_path / "missing.jsonl")


def test_extra_metrics_in_a_file_are_ignored() -> None:
    lines = [edit(line, lambda o: o["metrics"].update(other={"x": 1})) for line in lines_of()]
    assert replay_lines(POLICY, lines, "x")["verdict"] == "inconclusive"


def test_the_snapshot_reader_parses_every_shape() -> None:
    snap = LineReader(POLICY).snapshot(lines_of(ticks=1)[0])
    assert set(snap.metrics) == {"errors", "accuracy", "latency", "approval_parity"}
    latency = snap.metrics["latency"].canary
    assert isinstance(latency, HistogramArm)
    assert latency.buckets is not None
    assert latency.buckets.bounds[-1] == float("inf")


def test_corrupted_files_are_errors_never_crashes() -> None:
    """Seeded random corruption (metrics dropped, negative or inconsistent counts, slices
    removed, arms emptied): every replay either ends in a ReplayError naming the line or
    gives a result, and the analyzer fed the same ticks never raises."""
    import random

    from canary.analysis.analyzer import Analyzer

    rng = random.Random(7)
    base = rollout(np.random.default_rng(3), ticks=20)
    errors = 0
    for _ in range(60):
        lines = list(base)
        for _ in range(rng.randrange(1, 3)):
            index = rng.randrange(len(lines))
            obj = json.loads(lines[index])
            name = rng.choice(sorted(obj["metrics"]))
            arm = obj["metrics"][name][rng.choice(["baseline", "canary"])]
            kind = rng.randrange(5)
            if kind == 0:
                obj["metrics"].pop(name)
            elif kind == 1:
                arm.clear()
            elif kind == 2 and "slices" in arm:
                arm["slices"].pop(rng.choice(sorted(arm["slices"])))
            elif kind == 3 and "buckets" in arm:
                arm["buckets"][rng.randrange(len(arm["buckets"]))][1] = -5
            else:
                arm["slices" if "slices" in arm else "x"] = {"a": {"events": 9, "total": 1}}
            lines[index] = json.dumps(obj)
        message = ""
        try:
            replay_lines(POLICY, lines, "c.jsonl")
        except ReplayError as exc:
            message = str(exc)
        if message:
            errors += 1
            assert re.match(r"^c\.jsonl:\d+: \S", message)
        snaps = [JsonSnapshot(**json.loads(line)) for line in lines]
        Analyzer(POLICY).update_many(snaps)
    assert errors >= 50
