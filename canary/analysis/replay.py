"""The replay format: recorded ticks of a rollout in, the verdict the analysis reaches out.

Why a public format. ``canary replay`` runs exactly the analysis the daemon runs over recorded
snapshots, with no server, so a team can backtest a policy on past rollouts (``canary record``
writes the same format from Prometheus) and benchmarks can compare canary with other judges on
thousands of simulated rollouts. One file is one rollout, one JSON object per line:

    {"t": 15.0, "canary_weight": 5,
     "metrics": {"errors": {"baseline": {"events": 12, "total": 9500},
                            "canary": {"events": 3, "total": 480}}, ...}}

Ratio metrics and fairness checks hold ``events``/``total`` or ``slices`` of them; histograms
hold cumulative ``buckets`` ([[le, count], ...], ``"+Inf"`` last) or ``slices`` of them. Every
count is cumulative since the rollout began. Metrics the policy does not name are ignored.

A malformed file is never half-analysed: the first problem (bad JSON, wrong shape, a metric
the policy needs that is missing, counts that are negative or go backwards) raises
``ReplayError`` naming the file and line. Lines after a rollback are parsed, but their counts
are not analysed: the rollout ended there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from canary.analysis.analyzer import INVALID, MISSING, Analyzer, TickResult
from canary.analysis.fast_replay import fast_run
from canary.analysis.jsonform import FormatError, JsonSnapshot, number, parse_metric
from canary.analysis.snapshot import MetricCounts, Snapshot
from canary.core.policy import HistogramMetric, Policy
from canary.errors import ReplayError


class LineReader:
    """Reads the lines of the replay format for one policy.

    ``tick`` checks what is common to every tick (JSON, ``t``, ``canary_weight``, every metric
    the policy needs present) and leaves the counts in JSON form for the analyzer, which
    checks them as it reads them; ``snapshot`` parses everything into snapshot types.
    """

    def __init__(self, policy: Policy) -> None:
        self._histogram = {
            m.name: isinstance(m, HistogramMetric) for m in policy.analysis.metrics
        } | {f.name: False for f in policy.analysis.fairness}

    def tick(self, line: str) -> JsonSnapshot:
        """One line as a JsonSnapshot; raises FormatError."""
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
        return self.checked(obj)

    def checked(self, obj: Any) -> JsonSnapshot:
        """A decoded line as a JsonSnapshot; raises FormatError."""
        if type(obj) is not dict:
            raise FormatError("a tick must be a JSON object")
        try:
            t_raw, weight_raw, metrics = obj["t"], obj["canary_weight"], obj["metrics"]
        except KeyError as exc:
            raise FormatError(f"a tick needs {exc.args[0]!r}") from None
        t = number(t_raw, "t")
        weight = number(weight_raw, "canary_weight")
        if not (math.isfinite(t) and 0 <= weight <= 100):
            raise FormatError("t must be finite and canary_weight within 0..100")
        if type(metrics) is not dict:
            raise FormatError("metrics must be an object")
        for name in self._histogram:
            if name not in metrics:
                raise FormatError(f"metric {name!r} is missing")
        return JsonSnapshot(t=t, canary_weight=weight, metrics=metrics)

    def snapshot(self, line: str) -> Snapshot:
        """One line fully parsed into snapshot types; raises FormatError."""
        raw = self.tick(line)
        metrics: dict[str, MetricCounts] = {
            name: parse_metric(raw.metrics[name], histogram, name)
            for name, histogram in self._histogram.items()
        }
        return Snapshot(t=raw.t, canary_weight=raw.canary_weight, metrics=metrics)


def _decode_all(lines: list[str]) -> list[Any] | None:
    """Every line decoded in one call (the per-call overhead of ``json.loads`` is a sizeable
    part of a replay); None when any line is not one JSON value, so the caller decodes line
    by line and names the bad one."""
    if any("\n" in line for line in lines):
        return None
    try:
        decoded = json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        return None
    if not isinstance(decoded, list) or len(decoded) != len(lines):
        return None  # a line such as '1, 2' would hold two values
    return decoded


def _tick_json(source: str, result: TickResult) -> dict[str, Any]:
    return {
        "file": source,
        "tick": result.tick,
        "t": result.t,
        "canary_weight": result.canary_weight,
        "e_value": result.e_value,
        "rollback": result.rollback,
        "enough": result.enough,
        "canary_total": result.canary_total,
        "metrics": {
            name: {
                "status": status.status,
                "e_value": status.e_value,
                "enough": status.enough,
                "progress": round(status.progress, 6),
            }
            for name, status in result.metrics.items()
        },
    }


def replay_lines(
    policy: Policy, lines: Iterable[str], source: str, ticks: bool = False
) -> dict[str, Any]:
    """Analyse one rollout given as lines of the replay format; the per-file JSON object.

    With ``ticks`` the object also has ``ticks``: one object per tick analysed.
    Raises ReplayError (``source:line: what``) for a malformed file.
    """
    lines = list(lines)
    fast = fast_run(policy, lines, full=ticks)
    if fast is not None:
        return _file_json(source, fast.last, fast.results)
    return strict_replay_lines(policy, lines, source, ticks)


def strict_replay_lines(
    policy: Policy, lines: Iterable[str], source: str, ticks: bool = False
) -> dict[str, Any]:
    """``replay_lines`` through the strict reader alone: every line decoded into dicts and
    checked as the daemon's snapshots are. The reference the compiled reader
    (``canary.analysis.fast_replay``) is tested against, and the reader of any file that
    one declines (its errors name the file and line)."""
    reader = LineReader(policy)
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    decoded = _decode_all([line for _, line in numbered])
    snapshots: list[JsonSnapshot] = []
    line_numbers: list[int] = []
    previous_t = -math.inf
    for index, (line_number, line) in enumerate(numbered):
        try:
            snap = reader.tick(line) if decoded is None else reader.checked(decoded[index])
        except FormatError as exc:
            raise ReplayError(f"{source}:{line_number}: {exc}") from None
        if snap.t <= previous_t or snap.t < 0:
            raise ReplayError(
                f"{source}:{line_number}: t must be >= 0 and increase "
                f"({snap.t:g} after {previous_t:g})"
            )
        previous_t = snap.t
        snapshots.append(snap)
        line_numbers.append(line_number)
    if not snapshots:
        raise ReplayError(f"{source}:1: no ticks")
    analyzer = Analyzer(policy)
    if ticks:
        results = analyzer.update_many(snapshots)
        final = results[-1]
        problem = next(
            (
                (index, status.problem or status.status)
                for index, result in enumerate(results)
                for status in result.metrics.values()
                if status.status in (INVALID, MISSING)
            ),
            None,
        )
    else:
        summary = analyzer.run(snapshots)
        final, problem = summary.last, summary.problem
    if problem is not None:
        raise ReplayError(f"{source}:{line_numbers[problem[0]]}: {problem[1]}")
    return _file_json(source, final, results if ticks else None)


def _file_json(source: str, final: TickResult, results: list[TickResult] | None) -> dict[str, Any]:
    """The per-file object (with ``ticks`` when every result is given)."""
    verdict = "rollback" if final.rollback else ("pass" if final.enough else "inconclusive")
    out: dict[str, Any] = {
        "file": source,
        "verdict": verdict,
        "tick": final.tick,
        "t": final.t,
        "canary_total": final.canary_total,
        "breaches": [
            {
                "metric": b.metric,
                "slice": b.slice,
                "e_value": b.e_value,
                "estimate": b.estimate,
                "interval": list(b.interval),
            }
            for b in final.breaches
        ],
    }
    if results is not None:
        out["ticks"] = [_tick_json(source, r) for r in results]
    return out


def replay_file(policy: Policy, path: str | Path, ticks: bool = False) -> dict[str, Any]:
    """Analyse one replay file; the per-file JSON object (see ``replay_lines``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(f"{path}:0: cannot read: {exc}") from None
    return replay_lines(policy, text.splitlines(), str(path), ticks=ticks)
