"""Corrupted replay files through ``canary replay``: a clear ``file:line:`` error, or a result.

Why: replay files come from ``canary record``, from other tools and from hand edits, and a
backtest that crashes (or, worse, quietly analyses half a file) teaches a team to distrust
the policy instead of the file. Whatever the corruption, the command must exit 0 with one
JSON object per file, or 1 with one line ``file:line: what`` per malformed file on stderr;
never a traceback, and for the corruptions the format forbids, the line named is the one
that is wrong. Tested through the command only, so the reader behind it may change freely.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary.cli import main
from tests.unit.analysis.rollouts import FOUR_METRICS, rollout

BOUNDED = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ERROR = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<what>\S.*)$")
# Corruptions the format forbids: the file must be refused, naming the corrupted line.
REFUSED = (
    "bad_json",
    "wrong_type",
    "negative",
    "nan",
    "infinite",
    "backwards",
    "missing_metric",
    "truncated_last",
    "weight_out_of_range",
    "t_not_increasing",
)
# Corruptions that may be accepted (extra fields are ignored; a huge count may be valid).
TOLERATED = ("extra_top_level", "extra_metric", "extra_count_key", "huge")


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay-policy") / "policy.yaml"
    path.write_text(FOUR_METRICS)
    return path


def _leaves(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every number in a tick's ``metrics`` (counts and bucket bounds)."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _leaves(item, (*prefix, key))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _leaves(item, (*prefix, index))]
    return [prefix] if isinstance(value, int | float) and not isinstance(value, bool) else []


def _counts(value: Any) -> list[tuple[Any, ...]]:
    """Paths to cumulative counts only (``events``/``total``, a bucket's count)."""
    return [p for p in _leaves(value) if p[-1] in ("events", "total") or p[-1] == 1]


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    _get(obj, path[:-1])[path[-1]] = value


@st.composite
def corrupted_files(draw: st.DrawFn) -> tuple[list[str], str, int]:
    """(lines, corruption, 1-based line corrupted) of a small simulated rollout."""
    seed = draw(st.integers(0, 2**16))
    lines = rollout(np.random.default_rng(seed), ticks=draw(st.integers(2, 8)), per_tick=300)
    kind = draw(st.sampled_from(REFUSED + TOLERATED))
    index = draw(st.integers(1 if kind in ("backwards", "t_not_increasing") else 0, len(lines) - 1))
    if kind == "truncated_last":
        index = len(lines) - 1
    tick = json.loads(lines[index])
    metrics = tick["metrics"]
    if kind == "bad_json":
        at = draw(st.integers(0, len(lines[index]) - 1))
        junk = draw(st.sampled_from(["", "}", "{", ",", '"', "x", "\\", "]]"]))
        broken = lines[index][:at] + junk + lines[index][at + 1 :]
        try:
            json.loads(broken)
        except ValueError:
            lines[index] = broken
        else:  # the edit kept it JSON (a space dropped): cut the closing brace instead
            lines[index] = lines[index][:-1]
        return lines, kind, index + 1
    if kind == "truncated_last":
        lines[index] = lines[index][: draw(st.integers(1, len(lines[index]) - 1))]
        return lines, kind, index + 1
    if kind == "wrong_type":
        path = draw(
            st.sampled_from(
                [("t",), ("canary_weight",), ("metrics",)]
                + [("metrics", *p) for p in _leaves(metrics)]
            )
        )
        bad = draw(st.sampled_from(["12", True, None, [], {}, [1, 2], "", {"events": 1}]))
        _set(tick, path, bad)
    elif kind == "negative":
        _set(metrics, draw(st.sampled_from(_counts(metrics))), -draw(st.integers(1, 10**6)))
    elif kind in ("nan", "infinite"):
        value = float("nan") if kind == "nan" else draw(st.sampled_from([1, -1])) * float("inf")
        _set(metrics, draw(st.sampled_from(_counts(metrics))), value)
    elif kind == "huge":
        value = draw(st.sampled_from([10**30, 1e300, 2**63, 1.7976931348623157e308]))
        _set(metrics, draw(st.sampled_from(_counts(metrics))), value)
    elif kind == "backwards":
        previous = json.loads(lines[index - 1])["metrics"]
        grown = [p for p in _counts(metrics) if _get(previous, p) > 0]
        if not grown:
            return lines, "none", 0
        path = draw(st.sampled_from(grown))
        _set(metrics, path, _get(previous, path) - draw(st.integers(1, _get(previous, path))))
    elif kind == "missing_metric":
        del metrics[draw(st.sampled_from(sorted(metrics)))]
    elif kind == "weight_out_of_range":
        tick["canary_weight"] = draw(st.sampled_from([-1, 100.5, 1e9, float("nan")]))
    elif kind == "t_not_increasing":
        tick["t"] = json.loads(lines[index - 1])["t"] - draw(st.sampled_from([0, 1, 1e6]))
    elif kind == "extra_top_level":
        tick[draw(st.text(min_size=1, max_size=8))] = draw(st.sampled_from([1, "x", None, {}]))
    elif kind == "extra_metric":
        metrics["not_in_policy"] = {"baseline": "anything", "canary": [1, 2]}
    elif kind == "extra_count_key":
        pairs = [p for p in _counts(metrics) if p[-1] in ("events", "total")]
        arm = _get(metrics, draw(st.sampled_from(pairs))[:-1])
        arm[draw(st.sampled_from(["extra", "Events", "le"]))] = 1
    lines[index] = json.dumps(tick)
    return lines, kind, index + 1


def _replay(policy: Path, *files: Path) -> Result:
    return CliRunner().invoke(main, ["replay", "--policy", str(policy), *map(str, files)])


def _errors(result: Result) -> list[re.Match[str]]:
    """stderr as ``file:line: what`` matches; fails on any other line."""
    matches = []
    for line in result.stderr.splitlines():
        match = ERROR.match(line)
        assert match is not None, f"not a file:line: error: {line!r}"
        matches.append(match)
    return matches


def _no_crash(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1), (result.exit_code, result.output)


@BOUNDED
@given(corrupted_files())
def test_corrupted_lines_are_named_or_the_file_is_analysed(
    tmp_path_factory: pytest.TempPathFactory,
    policy_file: Path,
    generated: tuple[list[str], str, int],
) -> None:
    lines, kind, line_number = generated
    path = tmp_path_factory.mktemp("replay") / "rollout.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = _replay(policy_file, path)
    _no_crash(result)
    errors = _errors(result)
    if result.exit_code == 0:
        assert not errors
        (summary,) = [json.loads(line) for line in result.stdout.splitlines()]
        assert summary["file"] == str(path)
        assert kind not in REFUSED, f"{kind} at line {line_number} was accepted"
        return
    (error,) = errors
    assert error["file"] == str(path)
    assert "\n" not in error["what"]
    assert 1 <= int(error["line"]) <= len(lines)
    if kind in REFUSED:
        assert int(error["line"]) == line_number, (kind, error.group(0))
    else:
        assert int(error["line"]) >= line_number, (kind, error.group(0))
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("content", "line", "what"),
    [
        (b"", 1, "no ticks"),
        (b"\n\n   \n", 1, "no ticks"),
        (b"\xff\xfe{}\n", 0, "cannot read"),
        (b'{"t": 15, "canary_weight": 5, "metrics": {}}\n', 1, "is missing"),
        (b"[]\n", 1, "must be a JSON object"),
        (b"null\n", 1, "must be a JSON object"),
        (b'{"t": 1}{"t": 2}\n', 1, "invalid JSON"),
        (b'{"t": 1e999, "canary_weight": 5, "metrics": {}}\n', 1, "t must be finite"),
    ],
)
def test_degenerate_files_are_refused_with_their_line(
    tmp_path: Path, policy_file: Path, content: bytes, line: int, what: str
) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    result = _replay(policy_file, path)
    _no_crash(result)
    assert result.exit_code == 1
    (error,) = _errors(result)
    assert (error["file"], int(error["line"])) == (str(path), line)
    assert what in error["what"], error.group(0)


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path, policy_file: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(rollout(np.random.default_rng(1), ticks=3)) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 15, "canary_weight": 5, "metrics": {"errors": NaN}}\n')
    result = _replay(policy_file, bad, good)
    _no_crash(result)
    assert result.exit_code == 1
    (error,) = _errors(result)
    assert error["file"] == str(bad)
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == [str(good)]


@pytest.mark.parametrize("bound", [[1, 2], {}, {"le": 1}, None, True, "nope"])
def test_a_bucket_bound_that_is_not_a_number_is_named(
    tmp_path: Path, policy_file: Path, bound: Any
) -> None:
    """Found by the property above: a list or an object as a bucket bound once escaped the
    reader as a TypeError (the bounds are cached by their raw values, which must hash)."""
    lines = rollout(np.random.default_rng(7), ticks=3, per_tick=300)
    tick = json.loads(lines[1])
    tick["metrics"]["latency"]["canary"]["buckets"][0][0] = bound
    lines[1] = json.dumps(tick)
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = _replay(policy_file, path)
    _no_crash(result)
    assert result.exit_code == 1
    (error,) = _errors(result)
    assert (error["file"], int(error["line"])) == (str(path), 2)
    assert "bucket bound" in error["what"], error.group(0)


@pytest.mark.parametrize("count", [-5, float("nan"), float("inf")])
def test_a_broken_count_before_the_baseline_has_data_is_named(
    tmp_path: Path, policy_file: Path, count: float
) -> None:
    """Found by the property above: a histogram tick whose baseline has no requests yet was
    skipped as "waiting" without its counts being checked, so a negative count passed."""
    lines = rollout(np.random.default_rng(11), ticks=3, per_tick=300)
    tick = json.loads(lines[0])
    tick["metrics"]["latency"]["baseline"]["buckets"][-1][1] = count
    lines[0] = json.dumps(tick)
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = _replay(policy_file, path)
    _no_crash(result)
    assert result.exit_code == 1
    (error,) = _errors(result)
    assert (error["file"], int(error["line"])) == (str(path), 1)
    assert "latency" in error["what"], error.group(0)
