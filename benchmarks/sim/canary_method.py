"""canary's own analysis, run exactly as users run it: ``replay_file`` on a replay file.

The benchmark writes each simulated rollout to a replay file and hands it to the public
entry point behind ``canary replay``, so what is measured is what ships, not a copy of it.
The rollback tick is found by the ``t`` canary reports; exposure is counted from the same
arrays as for every other method, and must equal the ``canary_total`` canary reports (a
check that the file and the arrays are the same rollout).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks.sim.outcome import NO_ROLLBACK, Breach, Outcome, rollback_at
from benchmarks.sim.rollout import Rollout
from canary.core.policy import Policy


class ReplayFile(Protocol):
    def __call__(self, policy: Policy, path: Path, ticks: bool = False) -> dict[str, Any]: ...


def load_replay_file() -> ReplayFile | None:
    """canary's ``replay_file``, or None while the analysis package does not provide it."""
    try:
        module = importlib.import_module("canary.analysis.replay")
    except ImportError:
        return None
    func = getattr(module, "replay_file", None)
    return func if callable(func) else None


def outcome_from_result(rollout: Rollout, result: dict[str, Any]) -> Outcome:
    """Turn one replay output object into an Outcome on ``rollout``."""
    if result.get("verdict") != "rollback":
        return NO_ROLLBACK
    t = float(result["t"])
    ticks = np.flatnonzero(np.isclose(rollout.t, t))
    if ticks.size == 0:
        raise ValueError(f"canary rolled back at t={t}, which is not a tick of the rollout")
    breaches: list[Breach] = [
        (str(b["metric"]), None if b.get("slice") is None else str(b["slice"]))
        for b in result.get("breaches", [])
    ]
    outcome = rollback_at(rollout, int(ticks[0]), breaches)
    reported = result.get("canary_total")
    if reported is not None and int(reported) != outcome.exposure:
        raise ValueError(
            f"canary counted {reported} canary requests at t={t}, the rollout has "
            f"{outcome.exposure}: the file and the arrays disagree"
        )
    return outcome


def canary_outcome(
    replay_file: ReplayFile, policy: Policy, path: Path, rollout: Rollout
) -> Outcome:
    return outcome_from_result(rollout, replay_file(policy, path))
