"""The HTTP API: rollouts to read, commands to send, metrics to scrape, probes to answer.

Reading is open (it binds to loopback by default); every state-changing call needs the
bearer token from the settings, compared in constant time. With no token configured, state
changes are refused outright rather than left open: a controller that moves production
traffic must not be steerable by whoever can reach its port.
"""

# No `from __future__ import annotations`: FastAPI must resolve the local dependency
# `require_token` in route signatures at definition time.

import hmac
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, SecretStr

from canary import __version__
from canary.core.lifecycle import Rollout
from canary.log import get_logger
from canary.service.controller import CommandError, Controller, NotFoundError
from canary.store.base import StoredRollout

log = get_logger(__name__)

_bearer = HTTPBearer(auto_error=False)


class RolloutSummary(BaseModel):
    id: str
    model: str
    version: str
    champion_version: str | None
    phase: str
    step: int
    steps: int
    canary_weight: float
    reason: str
    created_at: float
    updated_at: float
    e_value: float | str | None = None
    threshold: float | None = None
    # The proxy's latest refusal while it does not hold the stored weights (None: it does).
    router_error: str | None = None


class WeightPoint(BaseModel):
    at: float
    phase: str
    step: int
    canary_weight: float
    reason: str


class MetricEvidence(BaseModel):
    status: str
    e_value: float | str | None
    enough: bool
    progress: float
    problem: str | None = None


class RolloutDetail(RolloutSummary):
    history: list[WeightPoint]
    metrics: dict[str, MetricEvidence] = Field(default_factory=dict)
    breaches: list[dict[str, Any]] = Field(default_factory=list)
    canary_total: float | None = None
    lineage: str | None = None
    policy_digest: str = ""
    canary_address: str | None = None


class CommandResult(BaseModel):
    id: str
    phase: str
    canary_weight: float
    reason: str


def summary(stored: StoredRollout) -> RolloutSummary:
    rollout = stored.rollout
    last = rollout.detail.get("last") or {}
    policy = rollout.detail.get("policy") or {}
    alpha = (policy.get("analysis") or {}).get("alpha")
    return RolloutSummary(
        id=rollout.id,
        model=rollout.model,
        version=rollout.version,
        champion_version=rollout.champion_version,
        phase=rollout.phase.value,
        step=rollout.step,
        steps=len(policy.get("steps") or []),
        canary_weight=rollout.canary_weight,
        reason=rollout.reason,
        created_at=rollout.created_at,
        updated_at=rollout.updated_at,
        e_value=last.get("e_value"),
        threshold=1.0 / alpha if alpha else None,
        router_error=rollout.detail.get("router_error"),
    )


def detail(controller: Controller, stored: StoredRollout) -> RolloutDetail:
    rollout = stored.rollout
    last = rollout.detail.get("last") or {}
    history = [
        WeightPoint(
            at=t.at,
            phase=t.to_phase.value,
            step=t.step,
            canary_weight=t.canary_weight,
            reason=t.reason,
        )
        for t in controller.ctx.store.transitions(rollout.id)
    ]
    metrics = {
        name: MetricEvidence(
            status=m.get("status", "unknown"),
            e_value=m.get("e_value"),
            enough=bool(m.get("enough")),
            progress=float(m.get("progress", 0.0)),
            problem=m.get("problem"),
        )
        for name, m in (last.get("metrics") or {}).items()
    }
    base = summary(stored).model_dump()
    return RolloutDetail(
        **base,
        history=history,
        metrics=metrics,
        breaches=list(rollout.detail.get("breaches") or last.get("breaches") or []),
        canary_total=last.get("canary_total"),
        lineage=rollout.detail.get("lineage"),
        policy_digest=rollout.policy_digest,
        canary_address=rollout.canary_address,
    )


def create_app(
    controller: Controller,
    *,
    token: SecretStr | None,
    metrics_registry: Any,
    ready: Callable[[], tuple[bool, str]],
    extra_routes: Callable[[FastAPI], None] | None = None,
) -> FastAPI:
    """The API of one controller. ``ready`` says whether it can act (and why not)."""
    app = FastAPI(
        title="canary",
        version=__version__,
        description="Progressive delivery for ML models: rollouts, evidence and commands.",
    )

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        if token is None:
            raise HTTPException(
                status_code=403,
                detail="state changes are disabled: no API token is configured "
                "(set CANARY_API_TOKEN)",
            )
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                status_code=401,
                detail="missing bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = credentials.credentials.encode()
        if not hmac.compare_digest(given, token.get_secret_value().encode()):
            raise HTTPException(
                status_code=401,
                detail="wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return "api"

    @app.get("/healthz", tags=["probes"])
    def healthz() -> dict[str, str]:
        """The process is up and serving HTTP."""
        return {"status": "ok"}

    # Plain-text routes say so (response_class): the OpenAPI document must not promise JSON.
    @app.get("/readyz", tags=["probes"], response_class=PlainTextResponse)
    def readyz() -> PlainTextResponse:
        """Ready to act: policies loaded, store open, scheduler running."""
        ok, why = ready()
        return PlainTextResponse(why, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["probes"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """The controller's own metrics, for Prometheus."""
        return PlainTextResponse(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/rollouts", tags=["rollouts"])
    def list_rollouts(active: bool | None = None, model: str | None = None) -> list[RolloutSummary]:
        """Rollouts, newest first; ``active=true`` for the running ones only."""
        rows = controller.ctx.store.rollouts(active=active, model=model)
        return [summary(s) for s in reversed(rows)]

    @app.get("/rollouts/{rollout_id}", tags=["rollouts"])
    def get_rollout(rollout_id: str) -> RolloutDetail:
        """One rollout: phase, weight history, per-metric evidence, breaches."""
        stored = controller.ctx.store.get(rollout_id)
        if stored is None:
            raise HTTPException(status_code=404, detail=f"no rollout {rollout_id!r}")
        return detail(controller, stored)

    def run_command(
        rollout_id: str, command: Literal["pause", "resume", "promote", "abort"], who: str
    ) -> CommandResult:
        try:
            rollout: Rollout = controller.command(rollout_id, command, who=who)
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        except CommandError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        return CommandResult(
            id=rollout.id,
            phase=rollout.phase.value,
            canary_weight=rollout.canary_weight,
            reason=rollout.reason,
        )

    @app.post("/rollouts/{rollout_id}/pause", tags=["commands"])
    def pause(rollout_id: str, who: Annotated[str, Depends(require_token)]) -> CommandResult:
        """Hold the current step (the analysis keeps running and can still roll back)."""
        return run_command(rollout_id, "pause", who)

    @app.post("/rollouts/{rollout_id}/resume", tags=["commands"])
    def resume(rollout_id: str, who: Annotated[str, Depends(require_token)]) -> CommandResult:
        """Continue a paused rollout."""
        return run_command(rollout_id, "resume", who)

    @app.post("/rollouts/{rollout_id}/promote", tags=["commands"])
    def promote(rollout_id: str, who: Annotated[str, Depends(require_token)]) -> CommandResult:
        """Promote now, skipping the remaining steps (an operator's decision)."""
        return run_command(rollout_id, "promote", who)

    @app.post("/rollouts/{rollout_id}/abort", tags=["commands"])
    def abort(rollout_id: str, who: Annotated[str, Depends(require_token)]) -> CommandResult:
        """Roll back now and end the rollout as aborted."""
        return run_command(rollout_id, "abort", who)

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> RedirectResponse:
        return RedirectResponse(url=str(request.url_for("list_rollouts")))

    if extra_routes is not None:
        extra_routes(app)
    return app
