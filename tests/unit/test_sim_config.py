"""Command-line options of the simulated model server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.sim.config import SimConfig, format_group_values, parse_args, parse_group_values


def test_group_values_parse_in_order() -> None:
    assert parse_group_values("a=0.3, b=0.25,c=1") == {"a": 0.3, "b": 0.25, "c": 1.0}
    assert list(parse_group_values("z=0.1,a=0.2")) == ["z", "a"]


def test_empty_group_values_mean_no_groups() -> None:
    assert parse_group_values("") == {}
    assert parse_group_values("  ") == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a", "expected name=number"),
        ("a=x", "invalid number"),
        ("a=1.5", "probability"),
        ("a=-0.1", ">= 0"),
        ("a=nan", ">= 0"),
        ("a=inf", ">= 0"),
        ("a=0.1,a=0.2", "given twice"),
        ("a b=0.1", "invalid group name"),
        ('a"}=0.1', "invalid group name"),
        ("=0.1", "invalid group name"),
    ],
)
def test_bad_group_values_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_group_values(text)


def test_traffic_weights_may_exceed_one() -> None:
    assert parse_group_values("a=3,b=1", probabilities=False) == {"a": 3.0, "b": 1.0}
    with pytest.raises(ValueError, match=">= 0"):
        parse_group_values("a=-1", probabilities=False)


def test_command_line_sets_every_option() -> None:
    args = parse_args(
        [
            "--port", "8080", "--model", "credit-risk", "--version", "2",
            "--error-rate", "0.05", "--latency-ms", "20", "--jitter-ms", "3",
            "--tail-prob", "0.01", "--tail-ms", "400",
            "--positive-rate", "0.4", "--group-positive-rate", "a=0.3,b=0.25",
            "--accuracy", "0.8", "--group-accuracy", "b=0.7",
            "--label-delay", "30", "--label-fraction", "0.5", "--seed", "7",
        ]
    )  # fmt: skip
    assert args.port == 8080
    assert args.host == "127.0.0.1"
    assert args.config == SimConfig(
        model="credit-risk",
        version="2",
        error_rate=0.05,
        latency_ms=20.0,
        jitter_ms=3.0,
        tail_prob=0.01,
        tail_ms=400.0,
        positive_rate=0.4,
        group_positive_rate={"a": 0.3, "b": 0.25},
        accuracy=0.8,
        group_accuracy={"b": 0.7},
        label_delay_s=30.0,
        label_fraction=0.5,
        seed=7,
    )
    assert args.config.groups == ["a", "b"]
    assert args.config.positive_rate_of("a") == 0.3
    assert args.config.positive_rate_of("zzz") == 0.4
    assert args.config.accuracy_of("b") == 0.7
    assert args.config.accuracy_of("a") == 0.8


@pytest.mark.parametrize(
    "argv",
    [
        [],  # --port is required
        ["--port", "0"],
        ["--port", "70000"],
        ["--port", "1", "--model", "credit risk"],
        ["--port", "1", "--model", "x;rm -rf"],
        ["--port", "1", "--version", "0"],
        ["--port", "1", "--version", "v2"],
        ["--port", "1", "--error-rate", "1.2"],
        ["--port", "1", "--latency-ms", "-1"],
        ["--port", "1", "--tail-ms", "inf"],
        ["--port", "1", "--group-accuracy", "a=2"],
        ["--port", "1", "--group-positive-rate", "a{}=0.1"],
    ],
)
def test_bad_command_lines_exit_with_usage(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "bad name"},
        {"version": "01"},
        {"error_rate": -0.1},
        {"label_fraction": 1.1},
        {"latency_ms": float("nan")},
        {"group_accuracy": {"a": 1.5}},
        {"group_positive_rate": {"bad group": 0.5}},
    ],
)
def test_config_rejects_invalid_values(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by field
        SimConfig(**changes)  # type: ignore[arg-type]


probability = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
millis = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
group_name = st.from_regex(r"[A-Za-z0-9_.\-:]{1,12}", fullmatch=True)


@given(
    version=st.integers(min_value=1, max_value=10**9).map(str),
    error_rate=probability,
    latency_ms=millis,
    tail_prob=probability,
    tail_ms=millis,
    group_positive_rate=st.dictionaries(group_name, probability, max_size=4),
    group_accuracy=st.dictionaries(group_name, probability, max_size=4),
    label_delay_s=millis,
    seed=st.none() | st.integers(min_value=0, max_value=2**32),
)
def test_to_argv_and_parse_args_are_inverses(
    version: str,
    error_rate: float,
    latency_ms: float,
    tail_prob: float,
    tail_ms: float,
    group_positive_rate: dict[str, float],
    group_accuracy: dict[str, float],
    label_delay_s: float,
    seed: int | None,
) -> None:
    config = SimConfig(
        version=version,
        error_rate=error_rate,
        latency_ms=latency_ms,
        tail_prob=tail_prob,
        tail_ms=tail_ms,
        group_positive_rate=group_positive_rate,
        group_accuracy=group_accuracy,
        label_delay_s=label_delay_s,
        seed=seed,
    )
    assert parse_args(["--port", "9000", *config.to_argv()]).config == config


def test_format_group_values_round_trips() -> None:
    values = {"a": 0.1, "b": 1 / 3}
    assert parse_group_values(format_group_values(values)) == values


def test_profiles_file_gives_each_version_its_own_behaviour(tmp_path):
    from canary.sim.config import parse_args

    profiles = tmp_path / "profiles.yaml"
    profiles.write_text('"3": {error-rate: 0.02, group_accuracy: {a: 0.9, b: 0.7}}\n')
    base = ["--port", "8000", "--error-rate", "0.01", "--profiles", str(profiles)]
    three = parse_args([*base, "--version", "3"]).config
    assert three.error_rate == 0.02
    assert three.group_accuracy == {"a": 0.9, "b": 0.7}
    two = parse_args([*base, "--version", "2"]).config
    assert two.error_rate == 0.01
    assert two.group_accuracy == {}


def test_profiles_cannot_move_the_server(tmp_path):
    from canary.sim.config import parse_args

    profiles = tmp_path / "profiles.yaml"
    profiles.write_text('"3": {port: 9999}\n')
    with pytest.raises(SystemExit):
        parse_args(["--port", "8000", "--version", "3", "--profiles", str(profiles)])
