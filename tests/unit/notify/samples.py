"""Notifications used across the notify tests."""

from __future__ import annotations

from typing import Any

from canary.notify.base import Breach, DatasetRef, Notification, Provenance

ERRORS_B = Breach(
    metric="errors",
    e_value=41.3,
    estimate=0.021,
    interval=(0.016, 0.027),
    slice="b",
    slice_by="group",
    threshold=20.0,
    confidence=0.95,
    limit=0.015,
)


def rollback(**changes: Any) -> Notification:
    fields: dict[str, Any] = {
        "event": "rolled_back",
        "rollout_id": "r-42",
        "model": "credit-risk",
        "version": "7",
        "champion_version": "6",
        "step": 2,
        "weight": 5.0,
        "reason": "errors regressed in group b",
        "at": 1714564800.0,
        "sequence": 7,
        "breaches": (ERRORS_B,),
        "provenance": Provenance(
            run_id="ab12cd34", datasets=(DatasetRef("credit-2024", "1a2b3c", "training"),)
        ),
        "status_url": "http://127.0.0.1:8181/rollouts/r-42",
    }
    fields.update(changes)
    return Notification(**fields)


def plain(event: str, **changes: Any) -> Notification:
    """An event with no evidence or provenance attached."""
    return rollback(event=event, breaches=(), provenance=None, status_url=None, **changes)
