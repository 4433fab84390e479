"""How a simulated model version behaves, and its command line.

The simulated model server stands in for a real served model version in tests, end-to-end
runs and the local demo. Everything that makes one version better or worse than another
(errors, latency and its tail, selection rate and accuracy per group, how late labels
arrive) is a command-line option, so a test can start "version 3, with a p99-only latency
regression" as a plain process. ``SimConfig.to_argv`` and ``parse_args`` are inverses: the
test harness builds the argument list from the same dataclass the server parses it into.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from canary.core import names

DEFAULT_MODEL = "credit-risk"


def parse_group_values(text: str, *, probabilities: bool = True) -> dict[str, float]:
    """Parse ``a=0.3,b=0.25`` into ``{"a": 0.3, "b": 0.25}``.

    Group names become Prometheus label values, so they must match ``names.LABEL_VALUE``.
    With ``probabilities`` every value must lie in [0, 1]; otherwise (traffic mixes) any
    non-negative weight is accepted. An empty string means no groups.
    """
    result: dict[str, float] = {}
    if not text.strip():
        return result
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"invalid group value {item!r}: expected name=number")
        names.check(names.LABEL_VALUE, key, "group name")
        if key in result:
            raise ValueError(f"group {key!r} given twice")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"invalid number {raw.strip()!r} for group {key!r}") from None
        if not value >= 0.0 or value == float("inf"):  # also rejects NaN
            raise ValueError(f"value for group {key!r} must be a finite number >= 0")
        if probabilities and value > 1.0:
            raise ValueError(f"value for group {key!r} must be a probability in [0, 1]")
        result[key] = value
    return result


def format_group_values(values: Mapping[str, float]) -> str:
    """The inverse of ``parse_group_values`` (``repr`` keeps floats exact)."""
    return ",".join(f"{key}={value!r}" for key, value in values.items())


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability in [0, 1]")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def _checked(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return names.check(pattern, text, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _groups(text: str) -> dict[str, float]:
    try:
        return parse_group_values(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class SimConfig:
    """The behaviour of one simulated model version. Times are in the unit their name says."""

    model: str = DEFAULT_MODEL
    version: str = "1"
    # Probability that a request fails with HTTP 500 (no prediction is made).
    error_rate: float = 0.0
    # Every request takes latency_ms plus an exponential jitter with mean jitter_ms...
    latency_ms: float = 2.0
    jitter_ms: float = 1.0
    # ...plus, with probability tail_prob, tail_ms more: a tail that moves p99, not p50.
    tail_prob: float = 0.0
    tail_ms: float = 0.0
    # Probability of predicting 1 (selection rate), for groups not in group_positive_rate.
    positive_rate: float = 0.3
    group_positive_rate: Mapping[str, float] = field(default_factory=dict)
    # Probability that a prediction turns out correct, for groups not in group_accuracy.
    accuracy: float = 0.9
    group_accuracy: Mapping[str, float] = field(default_factory=dict)
    # Seconds between a prediction and the arrival of its ground-truth label.
    label_delay_s: float = 0.0
    # Share of predictions that ever get a label (real labels are often partial).
    label_fraction: float = 1.0
    # Seed of the random generator; None draws a fresh one.
    seed: int | None = None

    def __post_init__(self) -> None:
        names.check(names.MODEL_NAME, self.model, "model name")
        names.check(names.VERSION, self.version, "model version")
        for what in ("error_rate", "tail_prob", "positive_rate", "accuracy", "label_fraction"):
            value = getattr(self, what)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{what} must be a probability in [0, 1], got {value!r}")
        for what in ("latency_ms", "jitter_ms", "tail_ms", "label_delay_s"):
            value = getattr(self, what)
            if not 0.0 <= value < float("inf"):
                raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
        for groups in (self.group_positive_rate, self.group_accuracy):
            # Round-trip through the parser: same name and range rules as the command line.
            parse_group_values(format_group_values(groups))

    @property
    def groups(self) -> list[str]:
        """Groups named in any per-group option, in first-seen order."""
        return list(dict.fromkeys([*self.group_positive_rate, *self.group_accuracy]))

    def positive_rate_of(self, group: str) -> float:
        return self.group_positive_rate.get(group, self.positive_rate)

    def accuracy_of(self, group: str) -> float:
        return self.group_accuracy.get(group, self.accuracy)

    def to_argv(self) -> list[str]:
        """Command-line options that ``parse_args`` turns back into this config."""
        argv = [
            "--model", self.model,
            "--version", self.version,
            "--error-rate", repr(self.error_rate),
            "--latency-ms", repr(self.latency_ms),
            "--jitter-ms", repr(self.jitter_ms),
            "--tail-prob", repr(self.tail_prob),
            "--tail-ms", repr(self.tail_ms),
            "--positive-rate", repr(self.positive_rate),
            "--accuracy", repr(self.accuracy),
            "--label-delay", repr(self.label_delay_s),
            "--label-fraction", repr(self.label_fraction),
        ]  # fmt: skip
        if self.group_positive_rate:
            # "--opt=value": a group name may start with "-", which argparse would misread.
            argv.append(f"--group-positive-rate={format_group_values(self.group_positive_rate)}")
        if self.group_accuracy:
            argv.append(f"--group-accuracy={format_group_values(self.group_accuracy)}")
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        return argv


@dataclass(frozen=True)
class ServerArgs:
    """What the command line says: where to listen, and how to behave."""

    host: str
    port: int
    log_level: str
    config: SimConfig


def build_parser() -> argparse.ArgumentParser:
    default = SimConfig()
    parser = argparse.ArgumentParser(
        prog="python -m canary.sim.model_server",
        description="A simulated ML model version that serves predictions and exports "
        "Prometheus metrics per version and per group.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument(
        "--model",
        type=_checked(names.MODEL_NAME, "model name"),
        default=default.model,
        help="registered model name",
    )
    parser.add_argument(
        "--version",
        type=_checked(names.VERSION, "model version"),
        default=default.version,
        help="model version (positive integer)",
    )
    parser.add_argument(
        "--error-rate",
        type=_probability,
        default=default.error_rate,
        help="probability of an HTTP 500",
    )
    parser.add_argument(
        "--latency-ms",
        type=_non_negative,
        default=default.latency_ms,
        help="base latency of every request, ms",
    )
    parser.add_argument(
        "--jitter-ms",
        type=_non_negative,
        default=default.jitter_ms,
        help="mean of an exponential extra latency, ms",
    )
    parser.add_argument(
        "--tail-prob",
        type=_probability,
        default=default.tail_prob,
        help="probability that a request is slow",
    )
    parser.add_argument(
        "--tail-ms",
        type=_non_negative,
        default=default.tail_ms,
        help="extra latency of a slow request, ms",
    )
    parser.add_argument(
        "--positive-rate",
        type=_probability,
        default=default.positive_rate,
        help="probability of predicting 1 for groups not listed",
    )
    parser.add_argument(
        "--group-positive-rate",
        type=_groups,
        default={},
        metavar="G=P,...",
        help="per-group probability of predicting 1",
    )
    parser.add_argument(
        "--accuracy",
        type=_probability,
        default=default.accuracy,
        help="probability that a prediction is correct, groups not listed",
    )
    parser.add_argument(
        "--group-accuracy", type=_groups, default={}, metavar="G=P,...", help="per-group accuracy"
    )
    parser.add_argument(
        "--label-delay",
        type=_non_negative,
        default=default.label_delay_s,
        help="seconds before a prediction's label arrives",
    )
    parser.add_argument(
        "--label-fraction",
        type=_probability,
        default=default.label_fraction,
        help="share of predictions that ever get a label",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    parser.add_argument(
        "--profiles",
        metavar="FILE",
        help='YAML or JSON file mapping versions to options, e.g. {"3": {"error-rate": '
        "0.02}}; the entry for --version overrides the command line. Lets one start command "
        "(a policy's serving.start) give each version its own behaviour.",
    )
    return parser


def profile_argv(path: str, version: str) -> list[str]:
    """The options a profiles file gives ``version``, as command-line tokens."""
    import yaml

    with open(path, encoding="utf-8") as handle:  # noqa: PTH123 - a path from argv
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a profiles file maps versions to options")
    entry = data.get(version, data.get(int(version), {})) or {}
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: the profile of version {version} must be a mapping")
    tokens: list[str] = []
    for key, value in entry.items():
        option = str(key).replace("_", "-")
        if option in ("port", "host", "version", "model", "profiles"):
            raise ValueError(f"{path}: a profile cannot set --{option}")
        if isinstance(value, dict):
            value = format_group_values({str(k): float(v) for k, v in value.items()})
        tokens.append(f"--{option}={value}")
    return tokens


def parse_args(argv: Sequence[str] | None = None) -> ServerArgs:
    """Parse the command line; bad values exit with a usage message, like any command."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.profiles:
        try:
            extra = profile_argv(ns.profiles, ns.version)
        except (OSError, ValueError) as exc:
            parser.error(f"--profiles: {exc}")
        ns = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), *extra])
    if not 0 < ns.port < 65536:
        parser.error(f"--port {ns.port} is not a TCP port")
    config = SimConfig(
        model=ns.model,
        version=ns.version,
        error_rate=ns.error_rate,
        latency_ms=ns.latency_ms,
        jitter_ms=ns.jitter_ms,
        tail_prob=ns.tail_prob,
        tail_ms=ns.tail_ms,
        positive_rate=ns.positive_rate,
        group_positive_rate=ns.group_positive_rate,
        accuracy=ns.accuracy,
        group_accuracy=ns.group_accuracy,
        label_delay_s=ns.label_delay,
        label_fraction=ns.label_fraction,
        seed=ns.seed,
    )
    return ServerArgs(host=ns.host, port=ns.port, log_level=ns.log_level, config=config)
