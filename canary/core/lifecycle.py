"""A rollout's phases and the one table that says which moves between them are allowed.

Every change of phase goes through :func:`transition`, which checks the table and returns
the new rollout with a :class:`Transition` record; the service persists, logs and notifies
that record in one place. Phase checks scattered through a long reconcile function are how
controllers end up stuck after restarts; a table can be read, tested and drawn.

::

    pending ─► gating ─► starting ─► progressing(step i) ─► promoting ─► promoted
                 │           │         │   ▲    │
                 ▼           │         ▼   │    │
              rejected       │       paused ┘   │
                             ▼                  ▼
                        rolling_back ◄──────────┘  (from any non-terminal phase)
                             │
                             ▼
                 rolled_back | aborted | failed

``paused`` only freezes the ramp: the analysis keeps running and a breach still rolls back.
``rolling_back`` records where it ends (``rollback_to``), so an operator's abort ends as
``aborted`` and a regression as ``rolled_back``, through the same idempotent steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from canary.errors import TransitionError


class Phase(StrEnum):
    PENDING = "pending"
    GATING = "gating"
    STARTING = "starting"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTING = "promoting"
    PROMOTED = "promoted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """Phases in which the daemon keeps ticking the rollout."""
        return not self.terminal


TERMINAL = frozenset(
    {Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.REJECTED, Phase.FAILED}
)

# Where a rollout may go from each phase. Rolling back is reachable from every phase that
# may have sent traffic to the canary, so "stop this now" never depends on where it is.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.GATING, Phase.ABORTED, Phase.FAILED}),
    Phase.GATING: frozenset({Phase.STARTING, Phase.REJECTED, Phase.ABORTED, Phase.FAILED}),
    Phase.STARTING: frozenset({Phase.PROGRESSING, Phase.ROLLING_BACK}),
    Phase.PROGRESSING: frozenset(
        {Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING, Phase.ROLLING_BACK}
    ),
    Phase.PAUSED: frozenset({Phase.PROGRESSING, Phase.PROMOTING, Phase.ROLLING_BACK}),
    Phase.PROMOTING: frozenset({Phase.PROMOTED}),
    Phase.ROLLING_BACK: frozenset({Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED}),
    Phase.PROMOTED: frozenset(),
    Phase.ROLLED_BACK: frozenset(),
    Phase.ABORTED: frozenset(),
    Phase.REJECTED: frozenset(),
    Phase.FAILED: frozenset(),
}

# The event people are told about when a rollout enters a phase (None: not announced).
EVENTS: dict[Phase, str | None] = {
    Phase.PENDING: None,
    Phase.GATING: None,
    Phase.STARTING: None,
    Phase.PROGRESSING: "advanced",
    Phase.PAUSED: "paused",
    Phase.PROMOTING: None,
    Phase.PROMOTED: "promoted",
    Phase.ROLLING_BACK: None,
    Phase.ROLLED_BACK: "rolled_back",
    Phase.ABORTED: "aborted",
    Phase.REJECTED: "rejected",
    Phase.FAILED: "failed",
}


@dataclass(frozen=True)
class Rollout:
    """One version's way to production: persisted after every change, never mutated."""

    id: str
    model: str
    version: str
    champion_version: str | None
    phase: Phase = Phase.PENDING
    step: int = 0
    canary_weight: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    step_started_at: float | None = None
    analysis_started_at: float | None = None
    canary_address: str | None = None
    rollback_to: Phase | None = None
    reason: str = ""
    policy_digest: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Rollout:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Transition:
    """A record of one phase change: what the store keeps and what notifications say."""

    rollout_id: str
    from_phase: Phase
    to_phase: Phase
    at: float
    reason: str
    step: int
    canary_weight: float
    event: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def can_transition(from_phase: Phase, to_phase: Phase) -> bool:
    return to_phase in TRANSITIONS[from_phase]


def transition(
    rollout: Rollout,
    to: Phase,
    *,
    reason: str,
    at: float,
    detail: dict[str, Any] | None = None,
    **changes: Any,
) -> tuple[Rollout, Transition]:
    """Move ``rollout`` to phase ``to``; raise TransitionError if the table forbids it.

    ``changes`` are other fields updated in the same step (e.g. ``step``, ``canary_weight``),
    so a phase and the state that goes with it are always persisted together.
    """
    if not can_transition(rollout.phase, to):
        allowed = ", ".join(sorted(p.value for p in TRANSITIONS[rollout.phase])) or "none"
        raise TransitionError(
            f"rollout {rollout.id}: cannot go from {rollout.phase.value} to {to.value} "
            f"(allowed: {allowed})"
        )
    updated = rollout.replace(phase=to, reason=reason, updated_at=at, **changes)
    event = EVENTS[to]
    if to is Phase.PROGRESSING and rollout.phase is Phase.STARTING:
        event = "started"
    elif to is Phase.PROGRESSING and rollout.phase is Phase.PAUSED:
        event = "resumed"
    record = Transition(
        rollout_id=rollout.id,
        from_phase=rollout.phase,
        to_phase=to,
        at=at,
        reason=reason,
        step=updated.step,
        canary_weight=updated.canary_weight,
        event=event,
        detail=dict(detail or {}),
    )
    return updated, record
