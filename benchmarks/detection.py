"""Detection benchmark: canary against Flagger-, Argo-, Kayenta-style checks and an oracle.

Every method judges the SAME simulated rollouts: canary through ``replay_file`` on the
replay file (exactly what ``canary replay`` runs), the others on the same counts as arrays.
Null scenarios measure false rollbacks, regression scenarios measure detection, attribution
and the canary requests exposed before the rollback. See docs/benchmark.md.

    python -m benchmarks.detection                 # 1,000 rollouts per scenario
    python -m benchmarks.detection --quick         # 100 per scenario, a smoke test
    python -m benchmarks.detection --runs 200 --scenarios errors_2x --keep replays

Writes ``benchmarks/results/detection.md`` (``detection-quick.md`` with --quick) and the
raw per-run outcomes next to it as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.sim import report
from benchmarks.sim.canary_method import ReplayFile, canary_outcome, load_replay_file
from benchmarks.sim.flagger import argo, flagger
from benchmarks.sim.kayenta import kayenta
from benchmarks.sim.naive import naive_ztest
from benchmarks.sim.oracle import oracles
from benchmarks.sim.outcome import Outcome
from benchmarks.sim.policyview import PolicyView, view_of
from benchmarks.sim.rollout import write_replay
from benchmarks.sim.scenarios import Scenario, all_scenarios, threshold_bounds
from benchmarks.sim.simulate import simulate

RESULTS = Path(__file__).resolve().parent / "results"
PEERS = ["flagger", "argo", "kayenta", "naive"]
ORACLES = ["oracle_arm", "oracle_tolerance", "oracle_request"]


@dataclass(frozen=True)
class Task:
    scenario: str
    run: int
    seed: int
    keep: str | None


# --- worker side ---------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init_worker(use_canary: bool) -> None:
    _STATE["scenarios"] = {s.name: s for s in all_scenarios()}
    _STATE["views"] = {}
    _STATE["replay_file"] = load_replay_file() if use_canary else None
    _STATE["tmp"] = Path(tempfile.mkdtemp(prefix="canary-detection-"))


def _view(scenario: Scenario) -> PolicyView:
    views: dict[str, PolicyView] = _STATE["views"]
    if scenario.name not in views:
        views[scenario.name] = view_of(scenario.policy())
    return views[scenario.name]


def rng_for(seed: int, scenario: str, run: int) -> np.random.Generator:
    """The generator of one rollout: a function of (seed, scenario, run) only."""
    return np.random.default_rng([seed, zlib.crc32(scenario.encode()), run])


def run_one(task: Task) -> tuple[str, int, dict[str, dict[str, Any]]]:
    """Simulate one rollout and judge it with every method."""
    scenario: Scenario = _STATE["scenarios"][task.scenario]
    view = _view(scenario)
    rollout = simulate(scenario.config, rng_for(task.seed, scenario.seed_name, task.run))
    bounds = threshold_bounds(scenario.config)
    outcomes: dict[str, Outcome] = {
        "flagger": flagger(rollout, view, bounds),
        "argo": argo(rollout, view, bounds),
        "kayenta": kayenta(rollout, view),
        "naive": naive_ztest(rollout, view),
    }
    if scenario.expected is not None:
        rule = view.rule(scenario.expected[0])
        outcomes.update(
            oracles(
                rollout,
                scenario.config,
                scenario.expected,
                view.alpha,
                tolerance=(rule.relative, rule.absolute),
            )
        )
    replay_file: ReplayFile | None = _STATE["replay_file"]
    if replay_file is not None:
        folder = Path(task.keep) / task.scenario if task.keep else _STATE["tmp"]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"run-{task.run:05d}.jsonl"
        write_replay(rollout, path)
        try:
            outcomes["canary"] = canary_outcome(replay_file, scenario.policy(), path, rollout)
        except Exception as exc:
            keep = RESULTS / "detection-failures"
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, keep / f"{task.scenario}-{path.name}")
            raise RuntimeError(f"canary failed on {task.scenario} run {task.run}: {exc}") from exc
        if not task.keep:
            path.unlink()
    elif task.keep:
        folder = Path(task.keep) / task.scenario
        folder.mkdir(parents=True, exist_ok=True)
        write_replay(rollout, folder / f"run-{task.run:05d}.jsonl")
    return task.scenario, task.run, {m: report.compact(o) for m, o in outcomes.items()}


# --- driver --------------------------------------------------------------------------------


def _progress(text: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text.ljust(78))
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_all(
    scenarios: Sequence[Scenario],
    runs: int,
    seed: int,
    workers: int,
    keep: str | None,
    use_canary: bool,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per scenario, per method, the compact outcome of every run (in run order)."""
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(use_canary,)) as pool:
        for scenario in scenarios:
            tasks = [Task(scenario.name, i, seed, keep) for i in range(runs)]
            results: dict[int, dict[str, dict[str, Any]]] = {}
            start = time.perf_counter()
            step = max(1, runs // (50 if sys.stderr.isatty() else 10))
            for _, run, outs in pool.imap_unordered(run_one, tasks, chunksize=4):
                results[run] = outs
                done = len(results)
                if done % step == 0 or done == runs:
                    elapsed = time.perf_counter() - start
                    _progress(f"{scenario.name:<16} {done:>6}/{runs} rollouts  {elapsed:6.1f} s")
            if sys.stderr.isatty():
                sys.stderr.write("\n")
            methods = list(results[0])
            raw[scenario.name] = {m: [results[i][m] for i in range(runs)] for m in methods}
    return raw


def _targets(
    summaries: dict[str, dict[str, report.Summary]], scenarios: Sequence[Scenario], alpha: float
) -> list[str]:
    """The targets canary is held to, each with the measured number and pass/fail."""
    rows = ["| target | scenario | measured | met |", "| --- | --- | ---: | :---: |"]

    def row(target: str, name: str, value: float, met: bool) -> str:
        return f"| {target} | {name} | {value:.3f} | {'yes' if met else 'no'} |"

    for s in scenarios:
        c = summaries[s.name].get("canary")
        if c is None:
            continue
        if s.is_null:
            rows.append(row(f"false rollbacks <= {alpha:g}", s.name, c.rate, c.rate <= alpha))
        else:
            share = c.attributed / c.runs
            rows.append(row("detected and attributed >= 0.95", s.name, share, share >= 0.95))
    for name in ("errors_2x", "errors_2x_single", "errors_2x_strict"):
        errors = summaries.get(name, {})
        if "canary" in errors and report.ORACLE in errors:
            ratio = errors["canary"].median_exposure / errors[report.ORACLE].median_exposure
            rows.append(row("median exposure <= 1.3 x oracle", name, ratio, ratio <= 1.3))
            if "oracle_tolerance" in errors:
                ratio = (
                    errors["canary"].median_exposure / errors["oracle_tolerance"].median_exposure
                )
                rows.append(
                    row("(info) median exposure / tolerance oracle", name, ratio, ratio <= 1.3)
                )
    return rows


def render(
    raw: dict[str, dict[str, list[dict[str, Any]]]],
    scenarios: Sequence[Scenario],
    command: str,
    elapsed: float,
    workers: int,
    canary_pending: bool,
) -> tuple[str, dict[str, Any]]:
    """The Markdown report and the JSON document of summaries and raw outcomes."""
    summaries = {
        s.name: {m: report.summarise(recs, s.expected) for m, recs in raw[s.name].items()}
        for s in scenarios
    }
    alpha = scenarios[0].policy().analysis.alpha if scenarios else 0.05
    pending = ["canary"] if canary_pending else []
    methods = ["canary", *PEERS]
    nulls = [s for s in scenarios if s.is_null]
    regressions = [s for s in scenarios if not s.is_null]
    runs = max((len(next(iter(raw[s.name].values()))) for s in scenarios), default=0)
    lines = [
        "# Detection benchmark",
        "",
        f"`{command}`: {runs:,} simulated one-hour rollouts per scenario, 100 requests/s, "
        f"15 s ticks, alpha = {alpha:g}; {elapsed / 60:.1f} min on {workers} worker(s) "
        f"(Python {platform.python_version()}). Methods, scenarios and rules: docs/benchmark.md.",
        "",
    ]
    if nulls:
        lines += [
            "## False rollbacks (nothing is wrong with the canary)",
            "",
            "Share of rollouts rolled back, with the 95% Wilson interval.",
            "",
            report.null_table(summaries, [(s.name, s.title) for s in nulls], methods, pending),
            "",
        ]
    for s in regressions:
        metric, where = s.expected or ("", None)
        expected = f"`{metric}`" + (f" slice `{where}`" if where else "")
        lines += [
            f"## {s.title} ({s.name}; the truth: {expected})",
            "",
            report.regression_table(summaries[s.name], [*methods, *ORACLES], pending),
            "",
        ]
    if not canary_pending:
        lines += ["## canary against its targets", "", *_targets(summaries, scenarios, alpha), ""]
    else:
        lines += [
            "canary's column is pending: `canary.analysis.replay.replay_file` is not available "
            "yet.",
            "",
        ]
    doc = {
        "command": command,
        "runs": runs,
        "alpha": alpha,
        "elapsed_s": elapsed,
        "workers": workers,
        "canary_pending": canary_pending,
        "scenarios": {
            s.name: {
                "title": s.title,
                "policy": f"benchmarks/policies/{s.policy_file}",
                "expected": list(s.expected) if s.expected else None,
                "summary": {m: v.as_dict() for m, v in summaries[s.name].items()},
                "runs": {m: report.columns(recs) for m, recs in raw[s.name].items()},
            }
            for s in scenarios
        },
    }
    return "\n".join(lines), doc


def _public_arg(arg: str) -> str:
    """An argument as the saved command shows it: absolute paths (this machine's) become DIR."""
    if arg.startswith("/"):
        return "DIR"
    flag, eq, value = arg.partition("=")
    return f"{flag}=DIR" if eq and value.startswith("/") else arg


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="rollouts per scenario (1000)")
    parser.add_argument("--quick", action="store_true", help="100 rollouts per scenario")
    parser.add_argument("--seed", type=int, default=20240601, help="base seed")
    parser.add_argument("--scenarios", nargs="*", help="only these scenarios")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--keep", metavar="DIR", help="keep every replay file under DIR/<scenario>/"
    )
    parser.add_argument("--no-canary", action="store_true", help="skip canary's own analysis")
    parser.add_argument(
        "--out", metavar="NAME", help="results file stem (detection / detection-quick)"
    )
    args = parser.parse_args(argv)
    runs = 100 if args.quick else args.runs
    chosen = all_scenarios()
    if args.scenarios:
        known = {s.name for s in chosen}
        unknown = [n for n in args.scenarios if n not in known]
        if unknown:
            parser.error(
                f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        chosen = [s for s in chosen if s.name in args.scenarios]
    use_canary = not args.no_canary and load_replay_file() is not None
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python -m benchmarks.detection", *map(_public_arg, given)])
    start = time.perf_counter()
    raw = run_all(chosen, runs, args.seed, max(1, args.workers), args.keep, use_canary)
    elapsed = time.perf_counter() - start
    text, doc = render(raw, chosen, command.strip(), elapsed, args.workers, not use_canary)
    stem = args.out or ("detection-quick" if args.quick else "detection")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text + "\n", encoding="utf-8")
    (RESULTS / f"{stem}.json").write_text(
        json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    print(text)
    print(f"\nsaved benchmarks/results/{stem}.md and {stem}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
