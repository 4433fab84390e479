"""``canary replay``: the daemon's analysis over recorded rollouts, with no server.

Why a command. A team trusts a policy after seeing what it would have decided on its own
history (``canary record`` writes it) and benchmarks compare judges over thousands of
simulated rollouts. Output is one JSON object per line on stdout, so it pipes into ``jq``;
a malformed file is reported on stderr as ``file:line: what`` and the others still run.
"""

from __future__ import annotations

import gc
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from canary.analysis.replay import replay_file
from canary.cli import main
from canary.core.policy import Policy
from canary.core.policy_loader import load_policy
from canary.errors import PolicyError, ReplayError

REPLAY_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _replay_all(policy: Policy, paths: tuple[Path, ...], ticks: bool) -> int:
    """Replay every file, print its objects; the number of malformed files."""
    out = sys.stdout
    malformed = 0
    for path in _files(paths):
        # A decoded file is tens of thousands of small acyclic objects that reference
        # counting frees: the cyclic collector walking them while they are alive only costs
        # time, so it is paused for each file (and catches up between files).
        gc.disable()
        try:
            result = replay_file(policy, path, ticks=ticks)
        except ReplayError as exc:
            malformed += 1
            click.echo(str(exc), err=True)
            continue
        finally:
            gc.enable()
        for tick in result.pop("ticks", []):
            out.write(json.dumps(_finite(tick)) + "\n")
        out.write(json.dumps(_finite(result)) + "\n")
    out.flush()
    return malformed


def _finite(value: Any) -> Any:
    """JSON has no infinity or NaN: such numbers are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _files(paths: tuple[Path, ...]) -> Iterator[Path]:
    """Files as given; a directory stands for its replay files (*.jsonl, *.ndjson, *.json)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.suffix in REPLAY_SUFFIXES and p.is_file()
            )
        else:
            yield path


@main.command()
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Rollout policy (YAML) whose analysis is replayed.",
)
@click.option("--ticks", is_flag=True, help="Also print one object per tick analysed.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def replay(policy_path: Path, ticks: bool, paths: tuple[Path, ...]) -> None:
    """Replay recorded rollouts (JSON Lines, one tick per line) through a policy's analysis.

    Prints one JSON object per FILE: {"file", "verdict" (rollback | pass | inconclusive),
    "tick", "t", "canary_total", "breaches": [{"metric", "slice", "e_value", "estimate",
    "interval"}]}; with --ticks, the objects of its ticks come first. A directory stands for
    the replay files under it. Exit status: 0 when every file was analysed, 1 when any file
    was malformed (its error, `file:line: what`, goes to stderr), 2 for usage errors.
    """
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(2)
    # Everything alive now (modules, the policy) lives until the end: keep the cyclic garbage
    # collector from walking it again and again while thousands of files are decoded.
    gc.freeze()
    try:
        malformed = _replay_all(policy, paths, ticks)
    finally:
        gc.unfreeze()
    if malformed:
        sys.exit(1)
