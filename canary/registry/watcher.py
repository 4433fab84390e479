"""The watcher: from "what is in the registry" to "this version may get traffic now".

One ``watch`` call lists the versions the policy's trigger selects, newest first, runs the
offline gate on each against the champion, marks every version that fails as rejected (so it
is never picked up again and never gets traffic), and admits the newest version that passes.
Older passing versions are left alone: once the newest is promoted they are older than the
champion, and if it is rolled back they are next in line.

Without a champion nothing is admitted or rejected: a canary needs a baseline, and rejecting
candidates because of a missing alias would punish them for a registry problem.

The caller (the service) calls it only while no rollout of the model is running; it uses
the registry only through the ``Registry`` protocol, so it is tested with a fake.
"""

from __future__ import annotations

from dataclasses import dataclass

from canary.core.policy import Policy
from canary.log import get_logger
from canary.registry.base import ModelVersion, Outcome, Registry, VersionDetails, VersionStatus
from canary.registry.gate import GateResult, evaluate_gate

log = get_logger(__name__)


@dataclass(frozen=True)
class Admission:
    """A version that passed the offline gate and may start a rollout."""

    candidate: VersionDetails
    champion: VersionDetails
    gate: GateResult


@dataclass(frozen=True)
class Rejection:
    """A version the offline gate turned down (already marked rejected in the registry)."""

    candidate: VersionDetails
    gate: GateResult


@dataclass(frozen=True)
class WatchResult:
    champion: ModelVersion | None
    admitted: Admission | None
    rejected: tuple[Rejection, ...] = ()


def watch(registry: Registry, policy: Policy, rollout_id: str | None = None) -> WatchResult:
    """Gate the waiting versions of ``policy.model``; admit the newest that passes.

    ``rollout_id`` is written on rejected versions so a rejection can be traced to the
    controller run that made it. Raises RegistryError when the registry fails; the versions
    already marked stay marked, and running it again is safe.
    """
    champion = registry.champion(policy)
    if champion is None:
        log.info("watcher.no_champion", model=policy.model, alias=policy.champion_alias)
        return WatchResult(None, None)
    waiting = registry.candidates(policy)
    if not waiting:
        return WatchResult(champion, None)
    champion_details = registry.details(champion.model, champion.version)
    rejected: list[Rejection] = []
    for version in waiting:
        details = registry.details(version.model, version.version)
        gate = evaluate_gate(policy.offline_gate, details.metrics, champion_details.metrics)
        if gate.passed:
            log.info(
                "watcher.admitted",
                model=version.model,
                version=version.version,
                champion=champion.version,
                gate=gate.reason,
            )
            admission = Admission(details, champion_details, gate)
            return WatchResult(champion, admission, tuple(rejected))
        registry.record(
            policy, version.version, Outcome(VersionStatus.REJECTED, gate.reason, rollout_id)
        )
        log.warning(
            "watcher.rejected", model=version.model, version=version.version, reason=gate.reason
        )
        rejected.append(Rejection(details, gate))
    return WatchResult(champion, None, tuple(rejected))
