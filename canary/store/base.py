"""What the daemon keeps between ticks and across restarts, behind three small protocols.

The daemon is stateless between ticks: everything it must not forget is written here before
it acts on it again. A rollout row is the current state, transitions are its append-only
history, measurements are what each tick saw (a restarted daemon rebuilds its sequential
tests by replaying them in tick order), decisions are what each tick concluded, and the
notification outbox holds announcements until they are delivered.

Two rules make several controllers on one store safe:

* **Optimistic concurrency.** Every rollout row has a ``revision``. ``save`` names the
  revision it read; if another writer got there first the write is refused with
  :class:`StaleWriteError` and nothing is written, so two controllers can never both advance
  the same rollout. The caller re-reads and decides again.
* **One active rollout per model**, enforced by the database itself (a unique column that is
  NULL once the rollout is terminal), not by a check-then-insert race in Python.

Implementations translate their driver's exceptions into :class:`~canary.errors.StoreError`
(and the subclasses below), naming what failed and why, never with a driver traceback as the
only explanation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from canary.core.lifecycle import Rollout, Transition
from canary.errors import StoreError


class ConflictError(StoreError):
    """The write lost a race or broke a rule the database enforces; nothing was written."""


class StaleWriteError(ConflictError):
    """The rollout changed since it was read (another controller wrote it): re-read, re-decide."""


class ActiveRolloutError(ConflictError):
    """The model already has an active rollout; a second one would fight it for traffic."""


class DuplicateTickError(ConflictError):
    """A measurement for this rollout and tick number is already stored."""


@dataclass(frozen=True)
class StoredRollout:
    """A rollout as read from the store, with the revision ``save`` must be given back."""

    rollout: Rollout
    revision: int


class MeasurementOutcome(StrEnum):
    """What one tick's read of the metrics produced (data, not exceptions)."""

    OK = "ok"
    ERROR = "error"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class Measurement:
    """What one tick saw: the snapshot of cumulative counts and the analysis made of it.

    ``t`` is seconds since the rollout began (as in the replay format); ``at`` is the wall
    clock. ``snapshot`` and ``analysis`` are stored as JSON: tuples come back as lists and
    non-finite floats are refused (they are not JSON).
    """

    rollout_id: str
    tick: int
    t: float
    outcome: MeasurementOutcome
    snapshot: dict[str, Any] | None = None
    analysis: dict[str, Any] | None = None
    error: str | None = None
    at: float = 0.0


@dataclass(frozen=True)
class DecisionRecord:
    """What one tick decided (continue, advance, promote, rollback, hold) and why."""

    rollout_id: str
    tick: int
    at: float
    action: str
    reasons: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class OutboxEntry:
    """A notification to deliver on one channel, as handed to the store.

    ``dedupe_key`` plus ``channel`` is unique: recording the same entry again does nothing,
    whatever its status, so an event is never announced twice on a channel. ``channel`` is
    stored in clear and must never be a secret: it names where the secret is found (for
    example ``slack:CANARY_SLACK_WEBHOOK_URL``), not the secret itself.
    """

    dedupe_key: str
    channel: str
    rollout_id: str
    event: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class OutboxItem:
    """A stored outbox row: the entry plus its delivery state."""

    id: int
    entry: OutboxEntry
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    created_at: float
    next_attempt_at: float
    sent_at: float | None


class RolloutStore(Protocol):
    """Rollouts and their history: what every tick reads first and writes last."""

    def save(
        self,
        rollout: Rollout,
        *,
        expected_revision: int,
        transition: Transition | None = None,
        notifications: Sequence[OutboxEntry] = (),
        now: float | None = None,
    ) -> int:
        """Write the rollout, its transition and its notifications in ONE transaction.

        ``expected_revision`` is the revision that was read (0: a new rollout that must not
        exist yet). Returns the new revision. Raises :class:`StaleWriteError` if the stored
        revision differs and :class:`ActiveRolloutError` if the model already has another
        active rollout; in both cases nothing at all is written. Doing the three writes in
        one transaction is what lets a crash at any point leave either the old state or the
        new state with its announcement queued, never a phase change nobody hears about.
        """
        ...

    def get(self, rollout_id: str) -> StoredRollout | None:
        """The rollout and its revision, or None."""
        ...

    def rollouts(
        self, *, active: bool | None = None, model: str | None = None
    ) -> list[StoredRollout]:
        """Rollouts, oldest first, optionally only (in)active ones or one model's.

        On start the daemon resumes every active rollout; the API lists the rest.
        """
        ...

    def active_for(self, model: str) -> StoredRollout | None:
        """The model's one active rollout, if any: the watcher starts none while it exists."""
        ...

    def transitions(self, rollout_id: str) -> list[Transition]:
        """The rollout's phase changes in the order they happened (its audit trail)."""
        ...


class MeasurementStore(Protocol):
    """Per-tick measurements and decisions: the evidence behind every step."""

    def add_measurement(
        self,
        measurement: Measurement,
        decision: DecisionRecord | None = None,
        *,
        cursor: dict[str, Any] | None = None,
    ) -> None:
        """Record one tick's measurement and the decision made from it, together, with the
        metrics source's ``cursor`` after it (replacing the rollout's previous one).

        Raises :class:`DuplicateTickError` if that tick is already recorded: tick numbers are the
        replay order, so a second writer for the same tick is a bug or a lost race.
        """
        ...

    def measurements(self, rollout_id: str) -> list[Measurement]:
        """Every measurement of the rollout in tick order, to rebuild the analysis state."""
        ...

    def cursor(self, rollout_id: str) -> dict[str, Any] | None:
        """The cursor stored with the rollout's latest measurement that had one."""
        ...

    def decisions(self, rollout_id: str) -> list[DecisionRecord]:
        """Every decision of the rollout in tick order."""
        ...


class OutboxStore(Protocol):
    """The notification outbox: announcements survive crashes until delivered."""

    def enqueue(self, entries: Sequence[OutboxEntry], *, now: float | None = None) -> int:
        """Record entries as pending (when they could not go with ``save``).

        Entries whose dedupe key is already known on that channel are ignored, sent or not.
        Returns how many were new.
        """
        ...

    def claim_due(self, *, now: float, lease: float, limit: int) -> list[OutboxItem]:
        """Pending entries due at ``now``, each claimed for ``lease`` seconds.

        Claiming counts an attempt and moves the entry's next attempt to ``now + lease``, so
        a second worker does not send it at the same time and an entry whose sender died
        mid-delivery is tried again once the lease runs out.
        """
        ...

    def mark_sent(self, item_id: int, *, at: float) -> None:
        """The entry was delivered: it is never sent again."""
        ...

    def mark_failed(
        self, item_id: int, *, error: str, at: float, retry_at: float | None = None
    ) -> None:
        """A delivery attempt failed: retry at ``retry_at``, or give up when it is None."""
        ...

    def notifications(
        self, *, rollout_id: str | None = None, status: DeliveryStatus | None = None
    ) -> list[OutboxItem]:
        """Outbox entries in the order they were recorded, for the API and for tests."""
        ...


class Store(RolloutStore, MeasurementStore, OutboxStore, Protocol):
    """Everything the daemon persists; ``close`` releases connections on shutdown."""

    def close(self) -> None: ...
