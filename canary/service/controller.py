"""The controller: finds new versions, runs ticks, and carries out operators' commands.

It owns the per-rollout locks (a tick and an API command on the same rollout never run at
once) and turns every unexpected exception of a tick into a logged, counted error, so one
rollout's failure never stops the others or the scheduler. The scheduling itself is the
daemon's (``canary.service.daemon``); the controller can be driven tick by tick in tests.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from canary.core.lifecycle import Phase, Rollout
from canary.errors import BackendError, CanaryError, TransitionError
from canary.log import get_logger
from canary.registry.base import Outcome, VersionDetails, VersionStatus
from canary.registry.watcher import watch
from canary.service.policies import LoadedPolicy, PolicySet
from canary.service.tick import (
    ROLLBACK_STATUS,
    TickContext,
    commit,
    pinned_policy,
    run_tick,
    save_detail,
)
from canary.store.base import ActiveRolloutError, StoredRollout

log = get_logger(__name__)

Command = Literal["pause", "resume", "promote", "abort"]

# Model-name characters kept in a rollout id: with "-v" + 10 digits + "-" + 6 hex it stays
# within the 128 characters of a label value.
MAX_ID_MODEL_CHARS = 100

# What each command does from each phase.
COMMANDS: dict[Command, dict[Phase, Phase]] = {
    "pause": {Phase.PROGRESSING: Phase.PAUSED},
    "resume": {Phase.PAUSED: Phase.PROGRESSING},
    "promote": {Phase.PROGRESSING: Phase.PROMOTING, Phase.PAUSED: Phase.PROMOTING},
    "abort": {
        Phase.PENDING: Phase.ABORTED,
        Phase.GATING: Phase.ABORTED,
        Phase.STARTING: Phase.ROLLING_BACK,
        Phase.PROGRESSING: Phase.ROLLING_BACK,
        Phase.PAUSED: Phase.ROLLING_BACK,
    },
}


class CommandError(CanaryError):
    """A command that cannot apply to the rollout in its current phase (HTTP 409)."""


class NotFoundError(CanaryError):
    """No rollout with that id (HTTP 404)."""


@dataclass
class TickReport:
    rollout: Rollout | None
    seconds: float
    error: str | None = None


class Controller:
    def __init__(
        self,
        ctx: TickContext,
        policies: PolicySet,
        *,
        on_change: Callable[[Rollout], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.policies = policies
        self.on_change = on_change or (lambda _r: None)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, rollout_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(rollout_id, threading.Lock())

    # --- ticks ---------------------------------------------------------------------------

    def tick(self, rollout_id: str) -> TickReport:
        """One tick, never raising: errors are logged and counted, the rollout stays put."""
        started = time.perf_counter()
        with self._lock(rollout_id):
            try:
                rollout = run_tick(self.ctx, rollout_id)
            except BackendError as exc:
                kind = type(exc).__name__.removesuffix("Error").lower()
                self.ctx.telemetry.error(kind)
                self.ctx.telemetry.ticks.labels("error").inc()
                log.warning("tick.backend_error", rollout=rollout_id, kind=kind, error=str(exc))
                return TickReport(None, time.perf_counter() - started, str(exc))
            except Exception as exc:
                self.ctx.telemetry.error("tick")
                self.ctx.telemetry.ticks.labels("error").inc()
                log.exception("tick.failed", rollout=rollout_id, error=str(exc))
                return TickReport(None, time.perf_counter() - started, repr(exc))
        seconds = time.perf_counter() - started
        self.ctx.telemetry.tick_seconds.observe(seconds)
        self.ctx.telemetry.ticks.labels("ok").inc()
        if rollout is not None:
            if rollout.phase.terminal:
                self.ctx.evidence.forget(rollout.id)
                self.ctx.telemetry.forget(rollout)
            self.on_change(rollout)
        return TickReport(rollout, seconds)

    def active(self) -> list[Rollout]:
        return [s.rollout for s in self.ctx.store.rollouts(active=True)]

    # --- the registry --------------------------------------------------------------------

    def poll_registry(self) -> list[Rollout]:
        """Start a rollout for each model that has an admitted version and none running.

        Writes the registry outcomes that could not be written when a rollout ended first,
        and looks for no new version of a model whose outcome is still unwritten: until
        its ``canary.status`` tag says how the rollout ended, the registry still offers that
        version as a candidate, and it would be rolled out a second time.
        """
        started: list[Rollout] = []
        pending = self.flush_registry_outcomes()
        for loaded in self.policies.all():
            policy = loaded.policy
            if policy.model in pending:
                log.info("registry.poll_deferred", model=policy.model, reason="outcome pending")
                continue
            try:
                if self.ctx.store.active_for(policy.model) is not None:
                    continue
                result = watch(self.ctx.registry, policy, rollout_id=None)
            except BackendError as exc:
                self.ctx.telemetry.error(type(exc).__name__.removesuffix("Error").lower())
                log.warning("registry.poll_failed", model=policy.model, error=str(exc))
                continue
            for rejection in result.rejected:
                self._record_rejection(
                    loaded,
                    rejection.candidate,
                    result.champion.version if result.champion else None,
                    rejection.gate.reason,
                )
            if result.admitted is None:
                continue
            admitted = result.admitted
            rollout = self._start(
                loaded, admitted.candidate, admitted.champion, admitted.gate.reason
            )
            if rollout is not None:
                started.append(rollout)
        return started

    def _new_rollout(
        self, loaded: LoadedPolicy, candidate: VersionDetails, champion_version: str | None
    ) -> Rollout:
        version = candidate.version
        now = self.ctx.clock()
        # The id is written to registry tags and checked as a label value (at most 128
        # characters); a model name alone may be 128 characters, so only its start is used.
        prefix = version.model[:MAX_ID_MODEL_CHARS]
        rollout_id = f"{prefix}-v{version.version}-{secrets.token_hex(3)}"
        datasets = [
            {"name": d.name, "digest": d.digest, "context": d.context} for d in candidate.datasets
        ]
        return Rollout(
            id=rollout_id,
            model=version.model,
            version=version.version,
            champion_version=champion_version,
            created_at=now,
            updated_at=now,
            policy_digest=loaded.digest,
            detail={
                "policy": loaded.policy.model_dump(mode="json"),
                "policy_file": str(loaded.path),
                "provenance": {"run_id": version.run_id, "datasets": datasets},
                "lineage": candidate.lineage(),
                "offline_metrics": dict(candidate.metrics),
            },
        )

    def _start(
        self,
        loaded: LoadedPolicy,
        candidate: VersionDetails,
        champion: VersionDetails,
        gate_reason: str,
    ) -> Rollout | None:
        rollout = self._new_rollout(loaded, candidate, champion.version.version)
        try:
            self.ctx.store.save(rollout, expected_revision=0)
        except ActiveRolloutError:
            return None
        stored = StoredRollout(rollout, 1)
        stored = commit(self.ctx, stored, Phase.GATING, reason="checking the offline gate")
        stored = commit(self.ctx, stored, Phase.STARTING, reason=gate_reason)
        try:
            self.ctx.registry.record(
                pinned_policy(stored.rollout),
                rollout.version,
                Outcome(VersionStatus.IN_PROGRESS, reason="rollout started", rollout_id=rollout.id),
            )
        except BackendError as exc:
            log.warning("registry.mark_failed", rollout=rollout.id, error=str(exc))
        log.info(
            "rollout.created",
            rollout=rollout.id,
            model=rollout.model,
            version=rollout.version,
            champion=rollout.champion_version,
            lineage=rollout.detail["lineage"],
        )
        self.on_change(stored.rollout)
        return stored.rollout

    def _record_rejection(
        self,
        loaded: LoadedPolicy,
        candidate: VersionDetails,
        champion_version: str | None,
        reason: str,
    ) -> None:
        """Keep a record of a version the offline gate turned down (and announce it)."""
        rollout = self._new_rollout(loaded, candidate, champion_version)
        try:
            self.ctx.store.save(rollout, expected_revision=0)
        except ActiveRolloutError:
            return
        stored = StoredRollout(rollout, 1)
        stored = commit(self.ctx, stored, Phase.GATING, reason="checking the offline gate")
        commit(self.ctx, stored, Phase.REJECTED, reason=reason)

    def flush_registry_outcomes(self) -> set[str]:
        """Write the registry tags of rollouts that ended while the registry was down;
        returns the models that still have an outcome to write."""
        pending: set[str] = set()
        for stored in self.ctx.store.rollouts(active=False):
            rollout = stored.rollout
            if not rollout.detail.get("registry_pending"):
                continue
            status = ROLLBACK_STATUS.get(rollout.phase)
            if status is None:
                continue
            try:
                self.ctx.registry.record(
                    pinned_policy(rollout),
                    rollout.version,
                    Outcome(status, reason=rollout.reason, rollout_id=rollout.id),
                )
            except BackendError as exc:
                self.ctx.telemetry.error("registry")
                log.warning("registry.still_pending", rollout=rollout.id, error=str(exc))
                pending.add(rollout.model)
                continue
            with self._lock(rollout.id):
                fresh = self.ctx.store.get(rollout.id)
                if fresh is not None:
                    save_detail(self.ctx, fresh, registry_pending=False)
            log.info("registry.outcome_written", rollout=rollout.id, status=status.value)
        return pending

    # --- operators' commands -------------------------------------------------------------

    def command(self, rollout_id: str, command: Command, *, who: str = "api") -> Rollout:
        """Apply an operator's command; raise NotFoundError or CommandError."""
        with self._lock(rollout_id):
            stored = self.ctx.store.get(rollout_id)
            if stored is None:
                raise NotFoundError(f"no rollout {rollout_id!r}")
            phase = stored.rollout.phase
            target = COMMANDS[command].get(phase)
            if target is None:
                allowed = ", ".join(p.value for p in COMMANDS[command]) or "none"
                raise CommandError(
                    f"cannot {command} rollout {rollout_id} in phase {phase.value} "
                    f"(possible from: {allowed})"
                )
            reason = f"{command} requested by {who}"
            extra: dict[str, Any] = {}
            if target is Phase.ROLLING_BACK:
                extra["rollback_to"] = Phase.ABORTED
            try:
                stored = commit(self.ctx, stored, target, reason=reason, **extra)
            except TransitionError as exc:
                raise CommandError(str(exc)) from exc
            log.info("rollout.command", rollout=rollout_id, command=command, who=who)
        if target in (Phase.ROLLING_BACK, Phase.PROMOTING):
            report = self.tick(rollout_id)
            if report.rollout is not None:
                return report.rollout
        self.on_change(stored.rollout)
        return stored.rollout
