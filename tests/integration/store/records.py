"""Rollouts with every field set to something other than its default, for round trips."""

from __future__ import annotations

from canary.core.lifecycle import Phase, Rollout


def full_rollout(
    rollout_id: str = "r-1", model: str = "credit-risk", phase: Phase = Phase.PAUSED
) -> Rollout:
    return Rollout(
        id=rollout_id,
        model=model,
        version="7",
        champion_version="6",
        phase=phase,
        step=3,
        canary_weight=12.5,
        created_at=1714564800.25,
        updated_at=1714564815.5,
        step_started_at=1714564810.125,
        analysis_started_at=1714564801.0,
        canary_address="127.0.0.1:8081",
        rollback_to=Phase.ROLLED_BACK,
        reason="operator paused: checking dashboards ✓",
        policy_digest="sha256:" + "ab" * 32,
        detail={
            "steps": [1, 5, 25],
            "nested": {"none": None, "float": 1.5, "text": "é", "flag": True},
        },
    )


def new_rollout(rollout_id: str = "r-1", model: str = "credit-risk") -> Rollout:
    """A rollout as the watcher creates it: pending, no traffic yet."""
    return Rollout(
        id=rollout_id,
        model=model,
        version="7",
        champion_version="6",
        created_at=1000.0,
        updated_at=1000.0,
    )
