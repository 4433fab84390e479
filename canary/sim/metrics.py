"""The Prometheus metrics a simulated model version exports.

The names and labels are the contract the canary policies query (see the example policy in
the design notes), so they are spelled once, here. Every series a test or a rollout may
ask about is created at zero when the server starts: a counter whose first sample is
already 1 loses that first event in ``increase()``, which would bias a canary with few
requests.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from canary.core import names

# 5 ms .. 10 s, dense around 50-500 ms where a slow tail of a fast model shows up.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# A request may bring any group name; past this many the server refuses new ones, so a
# misbehaving client cannot grow the number of series without bound.
MAX_GROUPS = 64


class TooManyGroupsError(ValueError):
    """A request named a group beyond ``MAX_GROUPS`` distinct ones."""


class ModelMetrics:
    """Counters and the latency histogram of one model version, in their own registry."""

    def __init__(self, model: str, version: str, groups: list[str] | None = None) -> None:
        self.model = names.check(names.MODEL_NAME, model, "model name")
        self.version = names.check(names.VERSION, version, "model version")
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "model_requests",
            "Requests answered, by HTTP status code.",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "model_request_duration_seconds",
            "Time to answer a request, seconds.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.predictions = Counter(
            "model_predictions",
            "Predictions made, by group and predicted class.",
            ["model", "version", "group", "predicted"],
            registry=self.registry,
        )
        self.labelled = Counter(
            "model_labelled",
            "Ground-truth labels received, by group and whether the prediction was correct.",
            ["model", "version", "group", "correct"],
            registry=self.registry,
        )
        self._groups: set[str] = set()
        self._groups_lock = threading.Lock()
        for code in ("200", "500"):
            self.requests.labels(self.model, self.version, code)
        self.duration.labels(self.model, self.version)
        for group in groups or []:
            self.add_group(group)

    def add_group(self, group: str) -> None:
        """Create the group's series at zero; raises on a bad name or too many groups."""
        if group in self._groups:
            return
        names.check(names.LABEL_VALUE, group, "group name")
        with self._groups_lock:
            if group in self._groups:
                return
            if len(self._groups) >= MAX_GROUPS:
                raise TooManyGroupsError(f"more than {MAX_GROUPS} groups")
            for predicted in ("0", "1"):
                self.predictions.labels(self.model, self.version, group, predicted)
            for correct in ("true", "false"):
                self.labelled.labels(self.model, self.version, group, correct)
            self._groups.add(group)

    def observe_request(self, status: int, duration_s: float) -> None:
        self.requests.labels(self.model, self.version, str(status)).inc()
        self.duration.labels(self.model, self.version).observe(duration_s)

    def count_prediction(self, group: str, predicted: int) -> None:
        self.predictions.labels(self.model, self.version, group, str(predicted)).inc()

    def count_label(self, group: str, correct: bool) -> None:
        self.labelled.labels(self.model, self.version, group, "true" if correct else "false").inc()

    def exposition(self) -> bytes:
        """The text exposition format Prometheus scrapes."""
        return generate_latest(self.registry)
