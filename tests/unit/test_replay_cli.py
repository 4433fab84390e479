"""``canary replay``: output exactly as the replay format says, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from canary.cli import main
from tests.unit.analysis.rollouts import FOUR_METRICS, Arm, rollout


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(FOUR_METRICS)
    return path


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(main, ["replay", *args])
    return result.exit_code, result.stdout.splitlines(), result.stderr


def test_one_object_per_file_in_order(tmp_path: Path, policy_file: Path) -> None:
    good = write(tmp_path / "good.jsonl", rollout(np.random.default_rng(1), ticks=8))
    bad = write(
        tmp_path / "bad.jsonl",
        rollout(np.random.default_rng(2), ticks=40, canary=Arm(error_rate=0.05)),
    )
    code, out, err = run("--policy", str(policy_file), str(good), str(bad))
    assert code == 0
    assert err == ""
    objects = [json.loads(line) for line in out]
    assert [o["file"] for o in objects] == [str(good), str(bad)]
    assert [list(o) for o in objects] == [
        ["file", "verdict", "tick", "t", "canary_total", "breaches"]
    ] * 2
    assert objects[0]["verdict"] == "inconclusive"
    assert objects[1]["verdict"] == "rollback"
    breach = objects[1]["breaches"][0]
    assert list(breach) == ["metric", "slice", "e_value", "estimate", "interval"]
    assert breach["metric"] == "errors"
    assert len(breach["interval"]) == 2


def test_ticks_come_before_their_file(tmp_path: Path, policy_file: Path) -> None:
    path = write(tmp_path / "r.jsonl", rollout(np.random.default_rng(3), ticks=4))
    code, out, _ = run("--policy", str(policy_file), "--ticks", str(path))
    assert code == 0
    objects = [json.loads(line) for line in out]
    assert [o.get("tick") for o in objects[:4]] == [1, 2, 3, 4]
    assert all("e_value" in o and "metrics" in o for o in objects[:4])
    assert objects[4]["verdict"] == "inconclusive"
    assert "ticks" not in objects[4]


def test_a_malformed_file_is_named_with_its_line_and_the_others_still_run(
    tmp_path: Path, policy_file: Path
) -> None:
    lines = rollout(np.random.default_rng(4), ticks=5)
    broken = json.loads(lines[2])
    broken["metrics"]["errors"]["canary"] = {"events": 0, "total": 0}  # a counter reset
    lines[2] = json.dumps(broken)
    bad = write(tmp_path / "bad.jsonl", lines)
    good = write(tmp_path / "good.jsonl", rollout(np.random.default_rng(5), ticks=5))
    code, out, err = run("--policy", str(policy_file), str(bad), str(good))
    assert code == 1
    assert [json.loads(line)["file"] for line in out] == [str(good)]
    assert err.startswith(f"{bad}:3: metric 'errors': canary ")
    assert "went backwards" in err
    assert len(err.strip().splitlines()) == 1


def test_a_directory_stands_for_its_replay_files(tmp_path: Path, policy_file: Path) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    for i in range(3):
        write(folder / f"r{i}.jsonl", rollout(np.random.default_rng(i), ticks=3))
    (folder / "notes.txt").write_text("not a replay file")
    code, out, _ = run("--policy", str(policy_file), str(folder))
    assert code == 0
    assert [Path(json.loads(line)["file"]).name for line in out] == [
        "r0.jsonl",
        "r1.jsonl",
        "r2.jsonl",
    ]


def test_usage_errors_exit_2(tmp_path: Path, policy_file: Path) -> None:
    replay_file = write(tmp_path / "r.jsonl", rollout(np.random.default_rng(1), ticks=2))
    assert run(str(replay_file))[0] == 2  # no --policy
    assert run("--policy", str(policy_file))[0] == 2  # no file
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("model: x\n")
    code, out, err = run("--policy", str(bad_policy), str(replay_file))
    assert code == 2
    assert out == []
    assert str(bad_policy) in err
