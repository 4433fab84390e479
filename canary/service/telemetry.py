"""The controller's own metrics, served at ``/metrics`` for Prometheus and Grafana.

A registry per daemon (not prometheus-client's global one) so tests and several controllers
in one process never share counters. Names are prefixed ``canary_``; the Grafana dashboard
and alert rules in ``deploy/`` use only these names (a test checks it).
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from canary.core.lifecycle import Phase, Rollout, Transition

if TYPE_CHECKING:
    from canary.analysis.analyzer import TickResult


class Telemetry:
    """Counters, gauges and histograms of one controller."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rollouts = Gauge(
            "canary_rollouts",
            "Rollouts known to this controller, by phase.",
            ["phase"],
            registry=r,
        )
        self.weight = Gauge(
            "canary_canary_weight_percent",
            "Share of traffic the store says the canary gets.",
            ["model", "rollout"],
            registry=r,
        )
        self.e_value = Gauge(
            "canary_e_value",
            "Current e-value of each metric of each active rollout (1/alpha rolls back).",
            ["model", "rollout", "metric"],
            registry=r,
        )
        self.threshold = Gauge(
            "canary_e_value_threshold",
            "The rollback threshold 1/alpha of each active rollout.",
            ["model", "rollout"],
            registry=r,
        )
        self.tick_seconds = Histogram(
            "canary_tick_duration_seconds",
            "Time one tick of one rollout takes, from reading the store to saving.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.ticks = Counter(
            "canary_ticks_total", "Ticks run, by outcome.", ["outcome"], registry=r
        )
        self.errors = Counter(
            "canary_errors_total",
            "Errors by kind (metrics, router, registry, serving, store, notify, tick).",
            ["kind"],
            registry=r,
        )
        self.transitions = Counter(
            "canary_transitions_total", "Phase changes, by phase entered.", ["phase"], registry=r
        )
        self.measurements = Counter(
            "canary_measurements_total",
            "Metric reads by outcome (ok, error).",
            ["outcome"],
            registry=r,
        )
        self.leader = Gauge(
            "canary_leader", "1 while this controller holds the leader lock.", registry=r
        )
        self.policy_reload_errors = Counter(
            "canary_policy_reload_errors_total",
            "Policy reloads refused because a file was invalid.",
            registry=r,
        )
        for phase in Phase:
            self.rollouts.labels(phase.value)
        for kind in ("metrics", "router", "registry", "serving", "store", "notify", "tick"):
            self.errors.labels(kind)
        # Counters exist at 0 from the start, so increase() in alert rules sees their first
        # increment (a series that appears already at 1 has no increase to Prometheus).
        for phase in Phase:
            self.transitions.labels(phase.value)
        for outcome in ("ok", "error"):
            self.ticks.labels(outcome)
            self.measurements.labels(outcome)

    def count_phases(self, rollouts: list[Rollout]) -> None:
        counts = dict.fromkeys(Phase, 0)
        for rollout in rollouts:
            counts[rollout.phase] += 1
        for phase, count in counts.items():
            self.rollouts.labels(phase.value).set(count)

    def observe_rollout(self, rollout: Rollout) -> None:
        self.weight.labels(rollout.model, rollout.id).set(rollout.canary_weight)

    def transition(self, record: Transition) -> None:
        self.transitions.labels(record.to_phase.value).inc()

    def measurement(self, rollout: Rollout, outcome: str) -> None:
        self.measurements.labels(outcome).inc()
        if outcome != "ok":
            self.errors.labels("metrics").inc()

    def analysis(self, rollout: Rollout, result: TickResult) -> None:
        alpha = ((rollout.detail.get("policy") or {}).get("analysis") or {}).get("alpha")
        if alpha:
            self.threshold.labels(rollout.model, rollout.id).set(1.0 / float(alpha))
        for name, status in result.metrics.items():
            value = status.e_value if math.isfinite(status.e_value) else 1e300
            self.e_value.labels(rollout.model, rollout.id, name).set(value)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def forget(self, rollout: Rollout) -> None:
        """Drop the per-rollout series of a finished rollout (keeps /metrics small)."""
        for metric in (self.weight, self.threshold):
            with contextlib.suppress(KeyError):
                metric.remove(rollout.model, rollout.id)
        for labels in list(self.e_value._metrics):
            if labels[:2] == (rollout.model, rollout.id):
                self.e_value.remove(*labels)
