"""What canary needs from a model registry, and the plain types it hands back.

The controller asks a registry four things: which version is the champion, which versions
are waiting for a rollout, what a version was trained on and scored offline, and to record
how a rollout ended. Everything else (MLflow's entities, its paging, its errors) stays inside
the implementation, so the watcher and the service can be tested with a small fake.

Outcomes are written into the registry itself (aliases and ``canary.*`` tags on the version)
because that is where people look: the MLflow UI then shows which version serves, which one
was rolled back and why, and which champion a promotion replaced. A version with a final
``canary.status`` is never picked up again; deleting that tag is how a person asks for
another try.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from canary.core import names
from canary.core.policy import Policy

# Tags canary writes on a model version. Their values are what the MLflow UI shows.
TAG_STATUS = "canary.status"
TAG_REASON = "canary.reason"
TAG_ROLLOUT_ID = "canary.rollout_id"
TAG_PREVIOUS_CHAMPION = "canary.previous_champion"

# MLflow accepts longer tag values, but a reason is meant to be read in a UI column.
MAX_REASON_CHARS = 2000


class VersionStatus(StrEnum):
    """The ``canary.status`` tag of a version."""

    IN_PROGRESS = "in_progress"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"
    ABORTED = "aborted"

    @property
    def done(self) -> bool:
        """A done version is never picked up again (a person may delete the tag to retry)."""
        return self is not VersionStatus.IN_PROGRESS


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, with its tags and the aliases that point at it."""

    model: str
    version: str
    source: str
    run_id: str | None
    created_ms: int
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names.check(names.MODEL_NAME, self.model, "model name")
        names.check(names.VERSION, self.version, "model version")

    @property
    def number(self) -> int:
        return int(self.version)

    @property
    def status(self) -> VersionStatus | None:
        """The status canary recorded, or None (an unknown value counts as none)."""
        raw = self.tags.get(TAG_STATUS)
        try:
            return VersionStatus(raw) if raw is not None else None
        except ValueError:
            return None


@dataclass(frozen=True)
class Dataset:
    """A dataset the version's run logged as an input (``mlflow.log_input``)."""

    name: str
    digest: str
    source: str
    source_type: str
    context: str | None = None  # "training", "evaluation", ... (the mlflow.data.context tag)

    def describe(self) -> str:
        """Short text for a notification: ``credit (training, digest 1a2b3c, s3://...)``."""
        parts = [p for p in (self.context, f"digest {self.digest}" if self.digest else "") if p]
        if self.source:
            parts.append(self.source)
        return f"{self.name} ({', '.join(parts)})" if parts else self.name


@dataclass(frozen=True)
class VersionDetails:
    """Where a version came from and how it scored offline."""

    version: ModelVersion
    metrics: Mapping[str, float]
    datasets: tuple[Dataset, ...] = ()
    run_name: str | None = None

    def lineage(self) -> str:
        """One line a notification can use: ``run big-cat-403 (ab12...), trained on credit``."""
        run = self.version.run_id
        head = f"run {self.run_name} ({run})" if self.run_name and run else f"run {run}"
        if run is None:
            head = f"source {self.version.source}"
        if not self.datasets:
            return f"{head}, no datasets logged"
        return f"{head}, datasets: " + "; ".join(d.describe() for d in self.datasets)


@dataclass(frozen=True)
class Outcome:
    """How a rollout ended for a version (or that it started), to be written to the registry."""

    status: VersionStatus
    reason: str = ""
    rollout_id: str | None = None

    def __post_init__(self) -> None:
        if self.rollout_id is not None:
            names.check(names.LABEL_VALUE, self.rollout_id, "rollout id")


class Registry(Protocol):
    """A model registry as the controller sees it. Every call may raise RegistryError."""

    def champion(self, policy: Policy) -> ModelVersion | None:
        """The version holding ``policy.champion_alias``, or None if no version holds it."""
        ...

    def candidates(self, policy: Policy) -> list[ModelVersion]:
        """Versions the policy's trigger selects, newest first.

        Never the champion, never a version whose status is done.
        """
        ...

    def details(self, model: str, version: str) -> VersionDetails:
        """The version's offline metrics and the datasets its run logged."""
        ...

    def record(self, policy: Policy, version: str, outcome: Outcome) -> tuple[str, ...]:
        """Write an outcome; returns the changes made (empty when it was already recorded).

        PROMOTED moves the champion alias to ``version`` and remembers the previous champion;
        ROLLED_BACK, REJECTED and ABORTED tag the version and remove the trigger alias if it
        still points at it; IN_PROGRESS only tags. Running it again changes nothing.
        """
        ...
