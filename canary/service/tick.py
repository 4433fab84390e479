"""One tick of one rollout, top to bottom: read the rollout, read metrics, decide, act, persist.

Every action here is idempotent (setting weights the proxy already has, tagging a version
that is already tagged, starting a server that is already running), and every phase change
is saved before the next phase's actions run. So a tick interrupted anywhere, by a crash, a
SIGKILL or a failing backend, can simply run again: it reads the stored phase and carries on
from there. Backends that fail raise BackendError; the tick logs it and leaves the rollout
where it is, and the next tick retries. Nothing here ever leaves more traffic on the canary
than the stored phase says: a rollback saves ``rolling_back`` first, and a rollout in
``rolling_back`` does nothing but drive its weight to zero until that succeeds.

The decision itself (advance, promote, roll back, hold) uses only the pinned policy, the
stored rollout and the analysis result: the I/O is at the edges of each handler.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from canary.analysis.analyzer import TickResult
from canary.core.lifecycle import Phase, Rollout, Transition, transition
from canary.core.policy import Policy
from canary.errors import BackendError, RegistryError
from canary.log import get_logger
from canary.metrics.prometheus import Arms, MetricSource
from canary.metrics.replay_line import snapshot_line
from canary.notify.base import Breach as NoticeBreach
from canary.notify.base import DatasetRef, Notification, Provenance, channels_for
from canary.notify.outbox import Outbox
from canary.registry.base import Outcome, Registry, VersionStatus
from canary.registry.gate import evaluate_gate
from canary.service.evidence import EvidenceCache
from canary.service.telemetry import Telemetry
from canary.serving.base import ModelServing
from canary.store.base import (
    DecisionRecord,
    Measurement,
    MeasurementOutcome,
    Store,
    StoredRollout,
)
from canary.traffic.base import Address, Router, Weights

log = get_logger(__name__)

# How many phase handlers one tick may run back to back (e.g. progressing -> rolling_back
# -> rolled_back): enough for every chain in the table, small enough to never loop.
MAX_CHAIN = 6

ROLLBACK_STATUS = {
    Phase.ROLLED_BACK: VersionStatus.ROLLED_BACK,
    Phase.ABORTED: VersionStatus.ABORTED,
    Phase.FAILED: VersionStatus.ROLLED_BACK,
}


@dataclass
class TickContext:
    """Everything a tick touches, injected so tests can swap any part."""

    store: Store
    registry: Registry
    metrics: MetricSource
    outbox: Outbox | None
    router_for: Callable[[Policy], Router]
    serving_for: Callable[[Policy], ModelServing]
    evidence: EvidenceCache
    telemetry: Telemetry = field(default_factory=Telemetry)
    clock: Callable[[], float] = time.time
    status_url: Callable[[str], str | None] = lambda _id: None


def pinned_policy(rollout: Rollout) -> Policy:
    """The policy the rollout started with (stored with it), not whatever is loaded now."""
    return Policy.model_validate(rollout.detail["policy"])


def run_tick(ctx: TickContext, rollout_id: str) -> Rollout | None:
    """Run one tick of ``rollout_id``; return the rollout as it stands afterwards."""
    stored = ctx.store.get(rollout_id)
    if stored is None:
        return None
    for _ in range(MAX_CHAIN):
        phase = stored.rollout.phase
        if phase.terminal:
            break
        handler = HANDLERS.get(phase)
        if handler is None:
            break
        policy = pinned_policy(stored.rollout)
        following = handler(ctx, stored, policy)
        if following is None or following.rollout.phase == phase:
            stored = following or stored
            break
        stored = following
    ctx.telemetry.observe_rollout(stored.rollout)
    return stored.rollout


# --- persistence and announcements --------------------------------------------------------


def commit(
    ctx: TickContext,
    stored: StoredRollout,
    to: Phase,
    *,
    reason: str,
    breaches: tuple[NoticeBreach, ...] = (),
    note: dict[str, Any] | None = None,
    merge_detail: dict[str, Any] | None = None,
    **changes: Any,
) -> StoredRollout:
    """Move the rollout to ``to`` and save it, its transition and its notifications at once.

    ``note`` goes on the transition record; ``merge_detail`` updates the rollout's detail in
    the same write; ``changes`` are other rollout fields (step, canary_weight, ...).
    """
    policy = pinned_policy(stored.rollout)
    base = stored.rollout
    if merge_detail:
        base = base.replace(detail={**base.detail, **merge_detail})
    updated, record = transition(base, to, reason=reason, at=ctx.clock(), detail=note, **changes)
    sequence = stored.revision + 1
    entries = []
    if record.event is not None and ctx.outbox is not None:
        channels = channels_for(policy.notify, record.event)
        if channels:
            notice = Notification.from_transition(
                updated,
                record,
                sequence=sequence,
                breaches=breaches,
                provenance=_provenance(updated),
                status_url=ctx.status_url(updated.id),
            )
            entries = ctx.outbox.entries(notice, channels)
    revision = ctx.store.save(
        updated, expected_revision=stored.revision, transition=record, notifications=entries
    )
    _log_transition(record, updated)
    if entries and ctx.outbox is not None:
        ctx.outbox.wake()
    ctx.telemetry.transition(record)
    return StoredRollout(updated, revision)


def save_detail(ctx: TickContext, stored: StoredRollout, **detail: Any) -> StoredRollout:
    """Save changes to the rollout's detail (no phase change)."""
    updated = stored.rollout.replace(
        detail={**stored.rollout.detail, **detail}, updated_at=ctx.clock()
    )
    revision = ctx.store.save(updated, expected_revision=stored.revision)
    return StoredRollout(updated, revision)


def _log_transition(record: Transition, rollout: Rollout) -> None:
    log.info(
        f"rollout.{record.to_phase.value}",
        rollout=rollout.id,
        model=rollout.model,
        version=rollout.version,
        from_phase=record.from_phase.value,
        step=record.step,
        canary_weight=record.canary_weight,
        reason=record.reason,
    )


def _provenance(rollout: Rollout) -> Provenance | None:
    data = rollout.detail.get("provenance")
    if not data:
        return None
    return Provenance(
        run_id=data.get("run_id"),
        datasets=tuple(
            DatasetRef(name=d["name"], digest=d.get("digest", ""), context=d.get("context"))
            for d in data.get("datasets", [])
        ),
    )


# --- the phases --------------------------------------------------------------------------


def _gating(ctx: TickContext, stored: StoredRollout, policy: Policy) -> StoredRollout | None:
    """Finish what a daemon killed while creating the rollout left undone: decide the gate.

    The controller saves a new rollout as pending, then moves it to gating and on to starting
    (or rejected) in separate writes; a SIGKILL between them leaves it in a phase no tick would
    ever move, and no other rollout of the model starts while it is active. The gate is a pure
    function of the candidate's offline metrics (stored with the rollout) and the champion's,
    so running it again reaches the decision the killed daemon had reached.
    """
    rollout = stored.rollout
    if rollout.phase is Phase.PENDING:
        stored = commit(ctx, stored, Phase.GATING, reason="checking the offline gate")
    try:
        champion = (
            ctx.registry.details(rollout.model, rollout.champion_version).metrics
            if rollout.champion_version is not None
            else None
        )
    except RegistryError as exc:
        log.warning("rollout.gate_pending", rollout=rollout.id, error=str(exc))
        return stored
    gate = evaluate_gate(policy.offline_gate, rollout.detail.get("offline_metrics", {}), champion)
    return commit(
        ctx, stored, Phase.STARTING if gate.passed else Phase.REJECTED, reason=gate.reason
    )


def _starting(ctx: TickContext, stored: StoredRollout, policy: Policy) -> StoredRollout | None:
    """Serve the candidate, put it behind the proxy at 0 %, then open the first step."""
    rollout = stored.rollout
    router = ctx.router_for(policy)
    try:
        backend = ctx.serving_for(policy).start(rollout.model, rollout.version)
        router.check()
        router.apply(Weights(0.0))
        router.set_backend("canary", backend.address)
    except BackendError as exc:
        return _backend_failed(ctx, stored, "start", exc, limit_to=Phase.ROLLING_BACK)
    now = ctx.clock()
    first = policy.steps[0]
    following = commit(
        ctx,
        stored,
        Phase.PROGRESSING,
        reason=f"serving {backend.address}; step 1 of {len(policy.steps)} at {first.weight:g}%",
        step=0,
        canary_weight=first.weight,
        step_started_at=now,
        analysis_started_at=now,
        canary_address=str(backend.address),
        note={"address": str(backend.address)},
        merge_detail={"step_canary_start": 0.0, "backend_failures": 0},
    )
    return _reconcile_weights(ctx, following, policy)


def _progressing(ctx: TickContext, stored: StoredRollout, policy: Policy) -> StoredRollout | None:
    """Keep the proxy at the stored weight, read metrics, analyse, and move if warranted."""
    lagging = stored.rollout.detail.get("router_error") is not None
    stored = _reconcile_weights(ctx, stored, policy)
    rollout = stored.rollout
    router_error = rollout.detail.get("router_error")
    evidence = ctx.evidence.get(rollout.id, policy)
    if lagging and router_error is None:
        stored = _restart_step(ctx, stored, evidence.last)
        rollout = stored.rollout
    if evidence.last is not None and evidence.last.rollback:
        # A stored measurement already decided (the daemon stopped before acting on it).
        return _roll_back(ctx, stored, evidence.last, policy)

    now = ctx.clock()
    started = rollout.analysis_started_at or now
    assert rollout.champion_version is not None
    arms = Arms(baseline=rollout.champion_version, canary=rollout.version)
    measured = ctx.metrics.read(
        policy,
        arms,
        t=now - started,
        canary_weight=rollout.canary_weight,
        state=evidence.source_state,
    )
    tick = evidence.ticks + 1
    ctx.telemetry.measurement(rollout, measured.outcome)

    if measured.outcome == "error" or measured.snapshot is None:
        evidence.ticks = tick
        evidence.consecutive_errors += 1
        limit = policy.analysis.on_query_error
        act = evidence.consecutive_errors >= limit.consecutive_limit
        action = limit.then if act else "hold"
        ctx.store.add_measurement(
            Measurement(
                rollout.id,
                tick,
                now - started,
                MeasurementOutcome.ERROR,
                error=measured.error,
                at=now,
            ),
            DecisionRecord(
                rollout.id,
                tick,
                now,
                action,
                (
                    f"metrics query failed ({evidence.consecutive_errors} in a row): "
                    f"{measured.error}",
                ),
            ),
        )
        if act and limit.then != "hold":
            reason = (
                f"metrics queries failed {evidence.consecutive_errors} ticks in a row "
                f"(limit {limit.consecutive_limit}): {measured.error}"
            )
            return _end(ctx, stored, reason, Phase.FAILED if limit.then == "fail" else None)
        return stored

    result = evidence.analyzer.update(measured.snapshot)
    evidence.ticks = tick
    evidence.consecutive_errors = 0
    evidence.source_state = measured.state
    evidence.last = result
    decision, reasons, step_change = _decide(policy, rollout, result, now)
    if router_error is not None and decision in ("advance", "promote"):
        # Never pass a step whose weights the proxy does not hold: its exposure never happened.
        decision, step_change = "hold", None
        reasons = [f"the proxy does not hold {rollout.canary_weight:g}% yet: {router_error}"]
    outcome = MeasurementOutcome.OK if result.canary_total > 0 else MeasurementOutcome.NO_DATA
    ctx.store.add_measurement(
        Measurement(
            rollout.id,
            tick,
            measured.snapshot.t,
            outcome,
            snapshot=snapshot_line(measured.snapshot),
            analysis={"result": result_json(result)},
            at=now,
        ),
        DecisionRecord(
            rollout.id, tick, now, decision, tuple(reasons), {"e_value": _num(result.e_value)}
        ),
        cursor=measured.state,
    )
    ctx.telemetry.analysis(rollout, result)

    if decision == "rollback":
        return _roll_back(ctx, stored, result, policy)
    if decision == "fail":
        return _end(ctx, stored, "; ".join(reasons), Phase.FAILED)
    if decision == "end":
        return _end(ctx, stored, "; ".join(reasons), None)
    if decision == "advance" and step_change is not None:
        step = policy.steps[step_change]
        following = commit(
            ctx,
            stored,
            Phase.PROGRESSING,
            reason=f"step {step_change + 1} of {len(policy.steps)} at {step.weight:g}%: "
            + "; ".join(reasons),
            step=step_change,
            canary_weight=step.weight,
            step_started_at=now,
            merge_detail={"step_canary_start": result.canary_total, "last": result_json(result)},
        )
        return _reconcile_weights(ctx, following, policy)
    if decision == "promote":
        return commit(
            ctx,
            stored,
            Phase.PROMOTING,
            reason="; ".join(reasons),
            merge_detail={"last": result_json(result)},
        )
    return save_detail(ctx, stored, last=result_json(result))


def _restart_step(
    ctx: TickContext, stored: StoredRollout, last: TickResult | None
) -> StoredRollout:
    """The proxy has only now taken the step's weights: the step starts now, so it lasts its
    min_duration (and min_requests) at the share it is meant to test."""
    now = ctx.clock()
    rollout = stored.rollout
    served = last.canary_total if last is not None else rollout.detail.get("step_canary_start")
    updated = rollout.replace(
        step_started_at=now,
        updated_at=now,
        detail={**rollout.detail, "step_canary_start": served or 0.0},
    )
    revision = ctx.store.save(updated, expected_revision=stored.revision)
    log.info("rollout.step_restarted", rollout=rollout.id, step=rollout.step)
    return StoredRollout(updated, revision)


def _decide(
    policy: Policy, rollout: Rollout, result: TickResult, now: float
) -> tuple[str, list[str], int | None]:
    """Pure: what this tick's evidence means for the rollout. (action, reasons, next step)."""
    if result.rollback:
        return "rollback", [breach_text(b) for b in result.breaches] or ["evidence of harm"], None
    analysis = policy.analysis
    started = rollout.analysis_started_at or now
    waiting = [s.idle_for for s in result.metrics.values()]
    if waiting and min(waiting) >= analysis.on_no_data.after:
        why = f"no new canary data for {min(waiting):.0f}s (limit {analysis.on_no_data.after:.0f}s)"
        if analysis.on_no_data.then == "rollback":
            return "end", [why], None
        if analysis.on_no_data.then == "fail":
            return "fail", [why], None
        return "hold", [why], None
    if now - started >= analysis.max_duration:
        return (
            "end",
            [
                f"no decision within max_duration {analysis.max_duration:.0f}s: "
                "not enough evidence that the canary is no worse"
            ],
            None,
        )
    if rollout.phase is not Phase.PROGRESSING:
        return "hold", ["paused"], None
    step = policy.steps[rollout.step]
    min_duration = step.min_duration if step.min_duration is not None else analysis.interval
    in_step = now - (rollout.step_started_at or now)
    served = result.canary_total - float(rollout.detail.get("step_canary_start", 0.0))
    reasons: list[str] = []
    if in_step < min_duration:
        reasons.append(f"step {rollout.step + 1}: {in_step:.0f}s of {min_duration:.0f}s")
    if step.min_requests is not None and served < step.min_requests:
        reasons.append(f"step {rollout.step + 1}: {served:.0f} of {step.min_requests} requests")
    if reasons:
        return "continue", reasons, None
    if rollout.step + 1 < len(policy.steps):
        return "advance", [f"step {rollout.step + 1} passed"], rollout.step + 1
    if not result.enough:
        short = sorted(n for n, s in result.metrics.items() if not s.enough)
        return (
            "continue",
            [f"last step: waiting for the minimum sample of {', '.join(short)}"],
            None,
        )
    return "promote", [f"all {len(policy.steps)} steps passed with no regression"], None


def _roll_back(
    ctx: TickContext, stored: StoredRollout, result: TickResult, policy: Policy
) -> StoredRollout:
    breaches = _notice_breaches(policy, [breach_json(b) for b in result.breaches])
    reason = "; ".join(breach_text(b) for b in result.breaches) or "evidence of harm"
    found = [breach_json(b) for b in result.breaches]
    following = commit(
        ctx,
        stored,
        Phase.ROLLING_BACK,
        reason=reason,
        rollback_to=Phase.ROLLED_BACK,
        note={"breaches": found},
        merge_detail={"breaches": found, "last": result_json(result)},
    )
    return _rolling_back(ctx, following, policy, breaches)


def _end(
    ctx: TickContext, stored: StoredRollout, reason: str, final: Phase | None
) -> StoredRollout:
    """Roll back for a reason that is not a breach (limits, timeouts, an operator)."""
    following = commit(
        ctx, stored, Phase.ROLLING_BACK, reason=reason, rollback_to=final or Phase.ROLLED_BACK
    )
    return _rolling_back(ctx, following, pinned_policy(stored.rollout))


def _rolling_back_handler(
    ctx: TickContext, stored: StoredRollout, policy: Policy
) -> StoredRollout | None:
    breaches = _notice_breaches(policy, stored.rollout.detail.get("breaches", []))
    return _rolling_back(ctx, stored, policy, breaches)


def _rolling_back(
    ctx: TickContext,
    stored: StoredRollout,
    policy: Policy,
    breaches: tuple[NoticeBreach, ...] = (),
) -> StoredRollout:
    """Weights to zero first (retried until it works), then the registry, then the server."""
    rollout = stored.rollout
    router = ctx.router_for(policy)
    try:
        router.apply(Weights(0.0))
    except BackendError as exc:
        ctx.telemetry.error("router")
        log.error(
            "rollout.rollback_blocked",
            rollout=rollout.id,
            error=str(exc),
            hint="traffic could not be moved off the canary; retrying every tick",
        )
        return _note_router_error(ctx, stored, str(exc))
    final = rollout.rollback_to or Phase.ROLLED_BACK
    registry_pending = False
    try:
        ctx.registry.record(
            policy,
            rollout.version,
            Outcome(ROLLBACK_STATUS[final], reason=rollout.reason, rollout_id=rollout.id),
        )
    except RegistryError as exc:
        # Traffic is already safe; the tag is written later by the registry poll.
        ctx.telemetry.error("registry")
        registry_pending = True
        log.warning("rollout.registry_pending", rollout=rollout.id, error=str(exc))
    try:
        ctx.serving_for(policy).stop(rollout.model, rollout.version)
    except BackendError as exc:
        log.warning("rollout.serving_stop_failed", rollout=rollout.id, error=str(exc))
    return commit(
        ctx,
        stored,
        final,
        reason=rollout.reason,
        breaches=breaches,
        canary_weight=0.0,
        merge_detail={"registry_pending": registry_pending, "router_error": None},
    )


def _promoting(ctx: TickContext, stored: StoredRollout, policy: Policy) -> StoredRollout | None:
    """All traffic to the new version, move the alias, then make it the champion arm."""
    rollout = stored.rollout
    router = ctx.router_for(policy)
    try:
        router.apply(Weights(100.0))
        ctx.registry.record(
            policy,
            rollout.version,
            Outcome(VersionStatus.PROMOTED, reason=rollout.reason, rollout_id=rollout.id),
        )
        if rollout.canary_address:
            router.set_backend("champion", Address.parse(rollout.canary_address))
            router.apply(Weights(0.0))
    except BackendError as exc:
        return _backend_failed(ctx, stored, "promote", exc)
    if rollout.champion_version is not None:
        try:
            ctx.serving_for(policy).stop(rollout.model, rollout.champion_version)
        except BackendError as exc:
            log.warning("rollout.serving_stop_failed", rollout=rollout.id, error=str(exc))
    return commit(ctx, stored, Phase.PROMOTED, reason=rollout.reason, canary_weight=100.0)


def _backend_failed(
    ctx: TickContext,
    stored: StoredRollout,
    action: str,
    exc: BackendError,
    limit_to: Phase | None = None,
) -> StoredRollout:
    """A backend failed: stay in the phase (the next tick retries), give up after a limit."""
    kind = type(exc).__name__.removesuffix("Error").lower() or "backend"
    ctx.telemetry.error(kind)
    failures = int(stored.rollout.detail.get("backend_failures", 0)) + 1
    log.warning(
        "rollout.backend_failed",
        rollout=stored.rollout.id,
        action=action,
        error=str(exc),
        failures=failures,
    )
    if limit_to is not None and failures >= BACKEND_FAILURE_LIMIT:
        return commit(
            ctx,
            stored,
            limit_to,
            reason=f"could not {action} after {failures} tries: {exc}",
            rollback_to=Phase.FAILED,
        )
    return save_detail(ctx, stored, backend_failures=failures, last_error=str(exc))


BACKEND_FAILURE_LIMIT = 10


def _reconcile_weights(ctx: TickContext, stored: StoredRollout, policy: Policy) -> StoredRollout:
    """Make the proxy hold what the store says (after a crash, a proxy reload or a change).

    A failure is kept on the rollout (detail ``router_error``, shown by the API) until the
    proxy holds the stored weights again, so the step it lags behind is not passed.
    """
    rollout = stored.rollout
    router = ctx.router_for(policy)
    try:
        if rollout.canary_address:
            router.set_backend("canary", Address.parse(rollout.canary_address))
        want = Weights(rollout.canary_weight)
        if router.read() != want:
            held = router.apply(want)
            log.info("router.reconciled", rollout=rollout.id, canary=held.canary)
    except BackendError as exc:
        ctx.telemetry.error("router")
        log.warning("router.reconcile_failed", rollout=rollout.id, error=str(exc))
        return _note_router_error(ctx, stored, str(exc))
    return _note_router_error(ctx, stored, None)


def _note_router_error(ctx: TickContext, stored: StoredRollout, error: str | None) -> StoredRollout:
    """Save the proxy's latest failure on the rollout (None: it holds the weights); a write
    only when it changes, so a steady tick costs nothing."""
    if stored.rollout.detail.get("router_error") == error:
        return stored
    return save_detail(ctx, stored, router_error=error)


HANDLERS: dict[Phase, Callable[[TickContext, StoredRollout, Policy], StoredRollout | None]] = {
    Phase.PENDING: _gating,
    Phase.GATING: _gating,
    Phase.STARTING: _starting,
    Phase.PROGRESSING: _progressing,
    Phase.PAUSED: _progressing,
    Phase.PROMOTING: _promoting,
    Phase.ROLLING_BACK: _rolling_back_handler,
}


# --- words and JSON ------------------------------------------------------------------------


def _num(value: float | None) -> float | str | None:
    if value is None:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return value


def breach_json(breach: Any) -> dict[str, Any]:
    return {
        "metric": breach.metric,
        "slice": breach.slice,
        "e_value": _num(breach.e_value),
        "estimate": _num(breach.estimate),
        "interval": [_num(breach.interval[0]), _num(breach.interval[1])],
        "measure": getattr(breach, "measure", ""),
    }


def breach_text(breach: Any) -> str:
    """One line people can act on: what regressed, by how much, and how sure we are."""
    where = f"{breach.metric}" + (f" ({breach.slice})" if breach.slice else "")
    lo, hi = breach.interval
    interval = f"[{_fmt(lo)}, {_fmt(hi)}]"
    measure = getattr(breach, "measure", "") or "estimate"
    return (
        f"{where} regressed: {measure} {_fmt(breach.estimate)}, confidence interval "
        f"{interval}, e-value {_fmt(breach.e_value)}"
    )


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value:
        return "nan"
    if abs(value) >= 1000 or value in (float("inf"), float("-inf")):
        return f"{value:.3g}"
    return f"{value:.4g}"


def result_json(result: TickResult) -> dict[str, Any]:
    return {
        "tick": result.tick,
        "t": result.t,
        "e_value": _num(result.e_value),
        "rollback": result.rollback,
        "enough": result.enough,
        "canary_total": result.canary_total,
        "breaches": [breach_json(b) for b in result.breaches],
        "metrics": {
            name: {
                "status": s.status,
                "problem": s.problem,
                "e_value": _num(s.e_value),
                "enough": s.enough,
                "progress": round(s.progress, 4),
                "idle_for": round(s.idle_for, 3),
            }
            for name, s in result.metrics.items()
        },
    }


def _notice_breaches(policy: Policy, found: list[dict[str, Any]]) -> tuple[NoticeBreach, ...]:
    """The breaches a notification can show. One it cannot (an infinite estimate or bound,
    e.g. a rate ratio over a baseline with no errors yet) is left out of the message and
    logged: announcing a rollback must never stop it (the reason still names every one)."""
    notices = []
    for data in found:
        try:
            notices.append(_notice_breach_json(policy, data))
        except ValueError as exc:
            log.warning("notify.breach_left_out", metric=data.get("metric"), error=str(exc))
    return tuple(notices)


def _notice_breach_json(policy: Policy, data: dict[str, Any]) -> NoticeBreach:
    slice_by = None
    for item in [*policy.analysis.metrics, *policy.analysis.fairness]:
        if item.name == data["metric"]:
            slice_by = item.slice_by
    lo, hi = data["interval"]

    def f(value: Any, default: float) -> float:
        try:
            return float(value)
        except (TypeError, ValueError):
            return default

    return NoticeBreach(
        metric=data["metric"],
        e_value=f(data["e_value"], float("inf")),
        estimate=f(data["estimate"], float("nan")),
        interval=(f(lo, float("-inf")), f(hi, float("inf"))),
        slice=data.get("slice"),
        slice_by=slice_by,
        threshold=1.0 / policy.analysis.alpha,
        unit="number",
    )
