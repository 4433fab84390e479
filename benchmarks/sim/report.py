"""From per-run outcomes to the numbers and Markdown tables of the detection benchmark.

A rollback on a null scenario is a false rollback; on a regression scenario it is a
detection, and it is *attributed* when the method named the (metric, slice) that truly
regressed. Exposure is the number of canary requests served up to the rollback; a run
that never rolled back counts as infinite exposure, so a median exists only when more
than half the runs detected (the table says "> 1 h" otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.sim.outcome import Breach, Outcome

METHOD_TITLES = {
    "canary": "canary (anytime-valid)",
    "flagger": "Flagger-style threshold",
    "argo": "Argo-Rollouts-style threshold",
    "kayenta": "Kayenta-style Mann-Whitney",
    "naive": "z-test at every tick",
    "oracle_arm": "oracle SPRT (which arm)",
    "oracle_tolerance": "oracle SPRT (which arm, H0 at tolerance)",
    "oracle_request": "oracle SPRT (per request)",
}
ORACLE = "oracle_arm"


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def compact(outcome: Outcome) -> dict[str, Any]:
    """An Outcome as plain JSON: tick, t, exposure and breaches (None when no rollback)."""
    return {
        "tick": outcome.tick,
        "t": outcome.t,
        "exposure": outcome.exposure,
        "breaches": [list(b) for b in outcome.breaches],
    }


def columns(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Per-run outcomes as columns, for the saved JSON: rollback tick (None: no rollback),
    canary requests exposed, and the blamed checks as ``metric`` or ``metric/slice``."""
    return {
        "tick": [r["tick"] for r in records],
        "exposure": [r["exposure"] for r in records],
        "blamed": [
            [b[0] if b[1] is None else f"{b[0]}/{b[1]}" for b in r["breaches"]] for r in records
        ],
    }


@dataclass(frozen=True)
class Summary:
    runs: int
    rollbacks: int
    attributed: int
    misattributed: int
    median_exposure: float
    median_minutes: float

    @property
    def rate(self) -> float:
        return self.rollbacks / self.runs if self.runs else math.nan

    def as_dict(self) -> dict[str, Any]:
        low, high = wilson(self.rollbacks, self.runs)
        return {
            "runs": self.runs,
            "rollbacks": self.rollbacks,
            "rate": self.rate,
            "rate_ci95": [low, high],
            "attributed": self.attributed,
            "misattributed": self.misattributed,
            "median_exposure": None if math.isinf(self.median_exposure) else self.median_exposure,
            "median_minutes": None if math.isinf(self.median_minutes) else self.median_minutes,
        }


def summarise(records: Sequence[Mapping[str, Any]], expected: Breach | None) -> Summary:
    """Summary of one method on one scenario from ``compact`` records."""
    exposures = [math.inf if r["tick"] is None else float(r["exposure"]) for r in records]
    minutes = [math.inf if r["tick"] is None else float(r["t"]) / 60.0 for r in records]
    rolled = [r for r in records if r["tick"] is not None]
    attributed = misattributed = 0
    if expected is not None:
        for r in rolled:
            blamed = {(b[0], b[1]) for b in r["breaches"]}
            attributed += expected in blamed
            misattributed += bool(blamed - {expected})
    return Summary(
        runs=len(records),
        rollbacks=len(rolled),
        attributed=attributed,
        misattributed=misattributed,
        median_exposure=float(np.median(exposures)) if exposures else math.nan,
        median_minutes=float(np.median(minutes)) if minutes else math.nan,
    )


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:.1f}%"


def _count(x: float) -> str:
    if math.isnan(x):
        return "—"
    return "> 1 h" if math.isinf(x) else f"{x:,.0f}"


def null_table(
    summaries: Mapping[str, Mapping[str, Summary]],
    scenarios: Sequence[tuple[str, str]],
    methods: Sequence[str],
    pending: Sequence[str] = (),
) -> str:
    """False rollback rate per method (rows) and null scenario (columns), with 95% CI."""
    head = "| method | " + " | ".join(f"{title}" for _, title in scenarios) + " |"
    rule = "| --- |" + " ---: |" * len(scenarios)
    rows = [head, rule]
    for m in methods:
        cells = []
        for name, _ in scenarios:
            if m in pending:
                cells.append("pending")
                continue
            s = summaries[name].get(m)
            if s is None:
                cells.append("—")
                continue
            low, high = wilson(s.rollbacks, s.runs)
            cells.append(f"{_pct(s.rate)} ({_pct(low)}–{_pct(high)})")
        rows.append(f"| {METHOD_TITLES.get(m, m)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def regression_table(
    summaries: Mapping[str, Summary], methods: Sequence[str], pending: Sequence[str] = ()
) -> str:
    """One regression scenario: detection, attribution and exposure per method."""
    oracle = summaries.get(ORACLE)
    rows = [
        "| method | detected | right metric & slice | blamed another | median canary requests "
        "| × oracle | median minutes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in methods:
        title = METHOD_TITLES.get(m, m)
        if m in pending:
            rows.append(f"| {title} | pending | pending | pending | pending | pending | pending |")
            continue
        s = summaries.get(m)
        if s is None:
            continue
        ratio = math.nan
        if oracle and math.isfinite(oracle.median_exposure) and oracle.median_exposure > 0:
            ratio = s.median_exposure / oracle.median_exposure
        ratio_s = "—" if math.isnan(ratio) else ("∞" if math.isinf(ratio) else f"{ratio:.2f}")
        minutes = "> 60" if math.isinf(s.median_minutes) else f"{s.median_minutes:.1f}"
        rows.append(
            f"| {title} | {_pct(s.rate)} | {_pct(s.attributed / s.runs if s.runs else math.nan)} "
            f"| {_pct(s.misattributed / s.runs if s.runs else math.nan)} "
            f"| {_count(s.median_exposure)} | {ratio_s} | {minutes} |"
        )
    return "\n".join(rows)
