"""Replay speed: ticks analysed per second by ``canary replay`` on one core.

The target: at least 20,000 ticks per second for a four-metric policy (one ratio metric, one
ratio metric with three slices, one histogram with 11 finite buckets, one fairness check over
three groups). The files are simulated one-hour rollouts (240 ticks of 15 s at 100 requests/s,
a 5% canary share, nothing wrong: every tick is analysed, none stops early at a rollback).

Measured these ways, best of ``--repeat`` runs each, CPU time of this process:

- ``json.loads only``: decoding every file's lines into dicts (one ``json.loads`` per file),
  the floor of the strict reader;
- ``compiled reader, counts only``: ``fast_replay.read_table`` on every file (typed decoding
  and the counts into one array), the floor of the compiled reader;
- ``replay, strict reader``: ``strict_replay_lines`` (dicts, then counts read per tick), the
  reader every file took before the compiled one, and still the one for files it declines;
- ``replay``: ``replay_file`` on every file (what the command runs per file);
- ``replay --ticks``: the same with one result object per tick;

and once as a subprocess, ``canary replay --policy P DIR`` with its output to /dev/null (its
CPU time, start-up included). Before timing, every file's output (with ``--ticks``) is
compared as JSON text between the two readers: the benchmark fails if one number differs.
Prints a Markdown table and writes it to ``benchmarks/results/replay_speed.md``.

    python -m benchmarks.replay_speed                # 100 files x 240 ticks
    python -m benchmarks.replay_speed --files 20     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from canary.analysis.analyzer import Analyzer
from canary.analysis.fast_replay import read_table
from canary.analysis.replay import replay_file, strict_replay_lines
from canary.core.policy import Policy, parse_policy

RESULTS = Path(__file__).resolve().parent / "results"

POLICY = """
model: credit-risk
trigger: {alias: challenger}
serving: {address: "127.0.0.1:8080"}
router: {type: haproxy, runtime_api: "127.0.0.1:9999", backend: credit_risk}
steps: [{weight: 5, min_duration: 1h}]
analysis:
  interval: 15s
  alpha: 0.05
  metrics:
    - name: errors
      kind: ratio
      events: model_requests_total{code=~"5.."}
      total: model_requests_total
      worse_when: higher
      tolerance: {relative: 0.10}
    - name: errors_by_group
      kind: ratio
      events: model_requests_total{code=~"5.."}
      total: model_requests_total
      worse_when: higher
      slice_by: group
    - name: latency
      kind: histogram
      buckets: model_request_duration_seconds_bucket
  fairness:
    - name: approval_parity
      positives: model_predictions_total{predicted="1"}
      total: model_predictions_total
      slice_by: group
"""

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
# probability of each latency bucket (the last one is above 10 s)
LATENCY = np.array([0.02, 0.08, 0.25, 0.30, 0.20, 0.10, 0.03, 0.011, 0.006, 0.002, 0.0009])
LATENCY = np.append(LATENCY, 1.0 - LATENCY.sum())
GROUPS = ["a", "b", "c"]


def rollout_lines(rng: np.random.Generator, ticks: int) -> list[str]:
    """One simulated rollout of the benchmark policy, as lines of the replay format."""
    n = rng.poisson(1500, ticks)
    canary = rng.binomial(n, 0.05)
    sizes = {"baseline": n - canary, "canary": canary}
    columns: dict[str, dict[str, np.ndarray]] = {}
    for arm, size in sizes.items():
        groups = np.array([rng.multinomial(s, [1 / 3] * 3) for s in size])
        columns[arm] = {
            "requests": np.cumsum(size),
            "errors": np.cumsum(rng.binomial(size, 0.01)),
            "group_requests": np.cumsum(groups, axis=0),
            "group_errors": np.cumsum(rng.binomial(groups, 0.01), axis=0),
            "positives": np.cumsum(rng.binomial(groups, 0.3), axis=0),
            "buckets": np.cumsum(
                np.cumsum(np.array([rng.multinomial(s, LATENCY) for s in size]), axis=1), axis=0
            ),
        }
    lines = []
    for k in range(ticks):
        metrics: dict[str, dict[str, object]] = {
            "errors": {},
            "errors_by_group": {},
            "latency": {},
            "approval_parity": {},
        }
        for arm, c in columns.items():
            metrics["errors"][arm] = {
                "events": int(c["errors"][k]),
                "total": int(c["requests"][k]),
            }
            metrics["errors_by_group"][arm] = {
                "slices": {
                    g: {
                        "events": int(c["group_errors"][k, i]),
                        "total": int(c["group_requests"][k, i]),
                    }
                    for i, g in enumerate(GROUPS)
                }
            }
            metrics["latency"][arm] = {
                "buckets": [[b, int(c["buckets"][k, i])] for i, b in enumerate(BOUNDS)]
                + [["+Inf", int(c["buckets"][k, -1])]]
            }
            metrics["approval_parity"][arm] = {
                "slices": {
                    g: {
                        "events": int(c["positives"][k, i]),
                        "total": int(c["group_requests"][k, i]),
                    }
                    for i, g in enumerate(GROUPS)
                }
            }
        lines.append(json.dumps({"t": 15.0 * (k + 1), "canary_weight": 5, "metrics": metrics}))
    return lines


def best_cpu(action: Callable[[], object], repeat: int) -> float:
    """The smallest CPU time of ``repeat`` runs (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        action()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=240)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    policy: Policy = parse_policy(POLICY, "replay-speed.yaml")
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="canary-replay-speed-") as tmp:
        folder = Path(tmp)
        files = []
        for i in range(args.files):
            path = folder / f"rollout-{i:05d}.jsonl"
            path.write_text("\n".join(rollout_lines(rng, args.ticks)) + "\n")
            files.append(path)
        policy_path = folder / "policy.yaml"
        policy_path.write_text(POLICY)
        texts = [p.read_text().splitlines() for p in files]
        total_ticks = sum(len(t) for t in texts)
        line_bytes = sum(len(line) for t in texts for line in t) / total_ticks

        verdicts = [replay_file(policy, p)["verdict"] for p in files]  # also warms caches
        for path, lines_of_file in zip(files, texts, strict=True):
            compiled = json.dumps(replay_file(policy, path, ticks=True))
            strict = json.dumps(strict_replay_lines(policy, lines_of_file, str(path), ticks=True))
            if compiled != strict:
                raise SystemExit(f"{path.name}: the two readers disagree")
        rows = []

        def decode_files() -> None:
            for lines_of_file in texts:  # one file at a time, as the replay reads them
                json.loads("[" + ",".join(lines_of_file) + "]")

        def read_files() -> None:
            for path in files:
                if read_table(Analyzer(policy), path.read_text().splitlines()) is None:
                    raise SystemExit(f"{path.name}: the compiled reader declined it")

        json_cpu = best_cpu(decode_files, args.repeat)
        rows.append(("json.loads only (the strict reader's floor)", json_cpu))
        read_cpu = best_cpu(read_files, args.repeat)
        rows.append(("compiled reader, counts only (its floor)", read_cpu))
        strict_cpu = best_cpu(
            lambda: [
                strict_replay_lines(policy, p.read_text().splitlines(), str(p)) for p in files
            ],
            args.repeat,
        )
        rows.append(("replay, strict reader", strict_cpu))
        replay_cpu = best_cpu(lambda: [replay_file(policy, p) for p in files], args.repeat)
        rows.append(("replay", replay_cpu))
        ticks_cpu = best_cpu(
            lambda: [replay_file(policy, p, ticks=True) for p in files], args.repeat
        )
        rows.append(("replay --ticks", ticks_cpu))

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, "-m", "canary.cli", "replay", "--policy", str(policy_path), tmp],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    lines = [
        "# Replay speed",
        "",
        f"`python -m benchmarks.replay_speed --files {args.files} --ticks {args.ticks}`: "
        f"{args.files} simulated one-hour rollouts, {total_ticks:,} ticks of a four-metric "
        f"policy (ratio, ratio with 3 slices, 11-bucket histogram, 3-group fairness check), "
        f"{line_bytes:,.0f} bytes per line. CPU time of one process, best of {args.repeat}; "
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} when it ran.",
        "",
        "| what | seconds | ticks/s | µs/tick |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds in rows:
        lines.append(
            f"| {name} | {seconds:.3f} | {total_ticks / seconds:,.0f} | "
            f"{1e6 * seconds / total_ticks:.1f} |"
        )
    lines.append(
        f"| `canary replay DIR` (a subprocess, its CPU time, start-up included) | "
        f"{cli_cpu:.3f} | {total_ticks / cli_cpu:,.0f} | {1e6 * cli_cpu / total_ticks:.1f} |"
    )
    verdict_counts = {v: verdicts.count(v) for v in sorted(set(verdicts))}
    lines += [
        "",
        f"replay / compiled reader's counts only: {replay_cpu / read_cpu:.2f}; strict reader / "
        f"replay: {strict_cpu / replay_cpu:.2f}. Outputs of the two readers (with `--ticks`) "
        f"compared as JSON text before timing: identical for all {args.files} files.",
        f"Verdicts (nothing is wrong in these rollouts): {verdict_counts}. "
        "Target: replay >= 20,000 ticks/s.",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replay_speed.md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
