"""The result of one method on one rollout: when it rolled back, and what it blamed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from benchmarks.sim.rollout import CANARY, Rollout

Breach = tuple[str, str | None]


@dataclass(frozen=True)
class Outcome:
    """``tick`` is the index of the tick at which the method rolled back (None: it never did).

    ``exposure`` counts the canary requests served up to and including that tick: the
    price of the decision. ``breaches`` names the (metric, slice) pairs the method blamed.
    """

    tick: int | None = None
    exposure: int | None = None
    t: float | None = None
    breaches: tuple[Breach, ...] = ()

    @property
    def rolled_back(self) -> bool:
        return self.tick is not None


NO_ROLLBACK = Outcome()


def rollback_at(rollout: Rollout, tick: int, breaches: Iterable[Breach]) -> Outcome:
    """An Outcome for a rollback at ``tick``, with the exposure read from the rollout."""
    return Outcome(
        tick=tick,
        exposure=int(rollout.requests()[CANARY, tick]),
        t=float(rollout.t[tick]),
        breaches=tuple(dict.fromkeys(breaches)),
    )
