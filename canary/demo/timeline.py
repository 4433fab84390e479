"""What the demo prints as it goes: one line per event, with the time since the start.

The words are built by pure functions from the daemon's API answers (a rollout's history,
its evidence, its breaches) and from offline evaluations, so they can be tested as text;
``Timeline`` only adds the clock and writes lines whole, from any thread (the Slack stand-in
calls it from its own).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from canary.demo.evaluation import Evaluation

WIDTH = 118  # long reasons are cut here: the status page has them whole


class Timeline:
    """Writes ``[  12.3s] text`` lines to ``out``."""

    def __init__(
        self, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._out = out if out is not None else sys.stdout
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._t0

    def say(self, text: str) -> None:
        """One event."""
        self._write(f"[{self.elapsed:6.1f}s] {text}")

    def detail(self, text: str) -> None:
        """A line that belongs to the event above it."""
        self._write(f"{'':10}{text}")

    def _write(self, line: str) -> None:
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def clip(text: str, width: int = WIDTH) -> str:
    """One line of at most ``width`` characters (line breaks become spaces)."""
    text = " ".join(text.splitlines())
    return text if len(text) <= width else text[: width - 1] + "…"


def headline(message: str) -> str:
    """The first sentence of a notification (its title): what a channel shows first."""
    first, dot, _ = message.partition(". ")
    return first + dot.strip()


def offline_summary(evaluation: Evaluation) -> str:
    """``accuracy 0.824 (a 0.818, b 0.833), approval gap 0.076`` with unmeasured groups."""
    groups = ", ".join(f"{g} {v:.3f}" for g, v in evaluation.group_accuracy.items())
    text = f"accuracy {evaluation.accuracy:.3f}"
    if groups:
        text += f" ({groups})"
    measured = len(evaluation.selection_rate)
    if measured >= 2:
        text += f", approval-rate gap {evaluation.dp_difference:.3f}"
    else:
        text += f", approval-rate gap {evaluation.dp_difference:.3f} over {measured} group"
    for group in evaluation.unmeasured:
        rows = evaluation.rows[group]
        text += f"; group {group}: {rows} validation rows, too few to measure"
    return text


def transition_line(version: str, point: Mapping[str, Any]) -> str:
    """One history entry of a rollout: ``v2 progressing  25%  step 2 of 3 ...``."""
    weight = float(point.get("canary_weight") or 0.0)
    phase = str(point.get("phase", "?"))
    reason = str(point.get("reason", ""))
    return clip(f"v{version} {phase:<12} {weight:>4.0f}%  {reason}")


def breach_line(breach: Mapping[str, Any]) -> str:
    """``accuracy, group b: estimate -0.16, interval [-0.22, -0.1], e-value 310``."""
    where = str(breach.get("metric", "?"))
    if breach.get("slice"):
        where += f", group {breach['slice']}"
    interval = breach.get("interval") or [None, None]
    low, high = (_number(v) for v in interval)
    return (
        f"breach: {where}: estimate {_number(breach.get('estimate'))}, "
        f"interval [{low}, {high}], e-value {_number(breach.get('e_value'))}"
    )


def progress_line(detail: Mapping[str, Any]) -> str | None:
    """While a step runs: the evidence so far and how much of the minimum sample is in."""
    metrics: Mapping[str, Any] = detail.get("metrics") or {}
    if not metrics:
        return None
    total = detail.get("canary_total")
    served = f"{float(total):,.0f} canary requests, " if total is not None else ""
    threshold = detail.get("threshold")
    limit = f" (rollback at {float(threshold):g})" if threshold else ""
    short = [
        f"{name} {100 * float(m.get('progress', 0.0)):.0f}%"
        for name, m in metrics.items()
        if not m.get("enough")
    ]
    sample = "minimum sample reached" if not short else "minimum sample: " + ", ".join(short)
    return clip(
        f"v{detail.get('version')} at {float(detail.get('canary_weight') or 0):.0f}%: {served}"
        f"e-value {_number(detail.get('e_value'))}{limit}; {sample}"
    )


def _number(value: Any) -> str:
    """Three significant digits; the API writes infinities and NaN as strings."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{float(value):.3g}"
