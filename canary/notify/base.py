"""What people are told when a rollout changes phase, and the small contract of who tells them.

A :class:`Notification` is built from the :class:`~canary.core.lifecycle.Transition` the
lifecycle produced, plus the evidence behind it (breaches) and where the model came from
(provenance). It is plain data: it is stored in the outbox as JSON before anything is sent,
so a crash between a rollback and its announcement loses nothing, and it carries a
deterministic ``dedupe_key`` so the same event is never announced twice, even by a
restarted daemon that rebuilds it from the same transition.

Channels are named ``kind:ENV_NAME`` (``slack:CANARY_SLACK_WEBHOOK_URL``): the name of the
environment variable that holds the secret URL, never the URL. The name is what the outbox
stores; the URL is only read from the environment when a notification is delivered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from canary.core import names
from canary.core.lifecycle import Rollout, Transition
from canary.core.policy import ALL_EVENTS, Notify
from canary.errors import NotifyError

Unit = Literal["fraction", "seconds", "number"]
UNITS: tuple[Unit, ...] = ("fraction", "seconds", "number")

RUN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
# A status page link goes into Slack's <url|text> syntax: no spaces, quotes, <, > or |.
STATUS_URL = re.compile(r"^https?://[^\s<>|\"']{1,2000}$")
_MAX_TEXT = 200  # dataset names and digests are registry text: shown, never trusted


class DeliveryError(NotifyError):
    """A delivery attempt failed. ``retryable`` is False when trying again cannot help (the
    endpoint refused the payload or does not exist); ``retry_after`` is the endpoint's own
    request (HTTP 429 Retry-After), in seconds."""

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def _text(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT or any(c in value for c in "\r\n"):
        raise ValueError(f"invalid {what} {value!r}: one line of at most {_MAX_TEXT} characters")
    return value


@dataclass(frozen=True)
class Breach:
    """One piece of evidence against the canary: a metric (in a slice) that is worse.

    ``estimate`` is the canary's estimated value of the metric and ``interval`` its
    anytime-valid confidence interval at level ``confidence``; ``baseline`` is the champion's
    value and ``limit`` the worst value the tolerance accepts. ``e_value`` is the evidence,
    ``threshold`` the evidence that triggers a rollback (1/alpha). ``unit`` says how to print
    values: ``fraction`` as percentages, ``seconds`` as durations, ``number`` as is.
    """

    metric: str
    e_value: float
    estimate: float
    interval: tuple[float, float]
    slice: str | None = None
    slice_by: str | None = None
    threshold: float | None = None
    confidence: float | None = None
    baseline: float | None = None
    limit: float | None = None
    unit: Unit = "fraction"

    def __post_init__(self) -> None:
        names.check(names.POLICY_NAME, self.metric, "metric name")
        if self.slice is not None:
            names.check(names.LABEL_VALUE, self.slice, "slice value")
        if self.slice_by is not None:
            names.check(names.LABEL_NAME, self.slice_by, "slice label")
        if self.unit not in UNITS:
            raise ValueError(f"invalid unit {self.unit!r}: one of {', '.join(UNITS)}")
        lo, hi = self.interval
        # An estimate or a bound may be infinite: a rate ratio over a champion that has had no
        # errors yet is unbounded above. It is shown as ∞; never NaN.
        if any(math.isnan(v) for v in (self.estimate, lo, hi)):
            raise ValueError(f"breach of {self.metric}: estimate and bounds must not be NaN")
        fixed = [self.baseline, self.limit, self.threshold]
        if any(v is not None and not math.isfinite(v) for v in fixed):
            raise ValueError(
                f"breach of {self.metric}: baseline, limit and threshold must be finite"
            )
        if math.isnan(self.e_value) or self.e_value < 0:
            raise ValueError(f"breach of {self.metric}: e-value must be >= 0")
        if lo > hi:
            raise ValueError(f"breach of {self.metric}: interval [{lo}, {hi}] is reversed")
        if self.confidence is not None and not 0 < self.confidence < 1:
            raise ValueError(f"breach of {self.metric}: confidence must be in (0, 1)")
        object.__setattr__(self, "interval", (float(lo), float(hi)))


@dataclass(frozen=True)
class DatasetRef:
    """A dataset the version's run logged: name and digest, as MLflow recorded them."""

    name: str
    digest: str = ""
    context: str | None = None  # "training", "evaluation", ...

    def __post_init__(self) -> None:
        _text(self.name, "dataset name")
        _text(self.digest, "dataset digest")
        if self.context is not None:
            _text(self.context, "dataset context")


@dataclass(frozen=True)
class Provenance:
    """Where the version came from, so a rollback message says what to look at."""

    run_id: str | None = None
    datasets: tuple[DatasetRef, ...] = ()

    def __post_init__(self) -> None:
        if self.run_id is not None:
            names.check(RUN_ID, self.run_id, "run id")
        object.__setattr__(self, "datasets", tuple(self.datasets))


@dataclass(frozen=True)
class Notification:
    """One announcement of one rollout event.

    ``sequence`` is the rollout revision the transition was saved with (``save`` returns it;
    it is ``expected_revision + 1``): unique per transition, and the same number again when
    a tick that crashed before saving runs again, which is what makes the dedupe key stable.
    """

    event: str
    rollout_id: str
    model: str
    version: str
    champion_version: str | None
    step: int
    weight: float
    reason: str
    at: float
    sequence: int
    breaches: tuple[Breach, ...] = ()
    provenance: Provenance | None = None
    status_url: str | None = None

    def __post_init__(self) -> None:
        if self.event not in ALL_EVENTS:
            raise ValueError(f"unknown event {self.event!r}: one of {', '.join(ALL_EVENTS)}")
        names.check(names.LABEL_VALUE, self.rollout_id, "rollout id")
        names.check(names.MODEL_NAME, self.model, "model name")
        names.check(names.VERSION, self.version, "model version")
        if self.champion_version is not None:
            names.check(names.VERSION, self.champion_version, "champion version")
        if self.step < 0 or self.sequence < 0:
            raise ValueError("step and sequence must be >= 0")
        if not 0 <= self.weight <= 100:
            raise ValueError(f"weight must be a percentage, got {self.weight}")
        if self.status_url is not None:
            names.check(STATUS_URL, self.status_url, "status page URL")
        object.__setattr__(self, "breaches", tuple(self.breaches))

    @property
    def dedupe_key(self) -> str:
        """``rollout/event/step/sequence``: the same event of the same transition, always."""
        return f"{self.rollout_id}/{self.event}/{self.step}/{self.sequence}"

    @classmethod
    def from_transition(
        cls,
        rollout: Rollout,
        transition: Transition,
        *,
        sequence: int,
        breaches: Sequence[Breach] = (),
        provenance: Provenance | None = None,
        status_url: str | None = None,
    ) -> Notification:
        """The announcement of ``transition``; ValueError if the transition has no event."""
        if transition.event is None:
            raise ValueError(f"a move to {transition.to_phase.value} is not announced")
        if transition.rollout_id != rollout.id:
            raise ValueError("the transition belongs to another rollout")
        return cls(
            event=transition.event,
            rollout_id=rollout.id,
            model=rollout.model,
            version=rollout.version,
            champion_version=rollout.champion_version,
            step=transition.step,
            weight=transition.canary_weight,
            reason=transition.reason,
            at=transition.at,
            sequence=sequence,
            breaches=tuple(breaches),
            provenance=provenance,
            status_url=status_url,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form kept in the outbox (not the public webhook shape: see message.py)."""
        return {
            "event": self.event,
            "rollout_id": self.rollout_id,
            "model": self.model,
            "version": self.version,
            "champion_version": self.champion_version,
            "step": self.step,
            "weight": self.weight,
            "reason": self.reason,
            "at": self.at,
            "sequence": self.sequence,
            "breaches": [_breach_dict(b) for b in self.breaches],
            "provenance": None
            if self.provenance is None
            else {
                "run_id": self.provenance.run_id,
                "datasets": [
                    {"name": d.name, "digest": d.digest, "context": d.context}
                    for d in self.provenance.datasets
                ],
            },
            "status_url": self.status_url,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        """Inverse of :meth:`to_dict`; ValueError (or KeyError, TypeError) if malformed."""
        provenance = data.get("provenance")
        return cls(
            event=data["event"],
            rollout_id=data["rollout_id"],
            model=data["model"],
            version=data["version"],
            champion_version=data.get("champion_version"),
            step=int(data["step"]),
            weight=float(data["weight"]),
            reason=str(data.get("reason", "")),
            at=float(data["at"]),
            sequence=int(data["sequence"]),
            breaches=tuple(_breach_from(b) for b in data.get("breaches") or ()),
            provenance=None
            if provenance is None
            else Provenance(
                run_id=provenance.get("run_id"),
                datasets=tuple(
                    DatasetRef(name=d["name"], digest=d.get("digest", ""), context=d.get("context"))
                    for d in provenance.get("datasets") or ()
                ),
            ),
            status_url=data.get("status_url"),
        )


def json_number(value: float) -> float | str:
    """An e-value, estimate or bound can be infinite; JSON has no infinity, so it is written
    as ``"inf"`` or ``"-inf"`` (which ``float()`` reads back)."""
    if math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def _breach_dict(b: Breach) -> dict[str, Any]:
    return {
        "metric": b.metric,
        "slice": b.slice,
        "slice_by": b.slice_by,
        "e_value": json_number(b.e_value),
        "threshold": b.threshold,
        "estimate": json_number(b.estimate),
        "interval": [json_number(b.interval[0]), json_number(b.interval[1])],
        "confidence": b.confidence,
        "baseline": b.baseline,
        "limit": b.limit,
        "unit": b.unit,
    }


def _breach_from(data: Mapping[str, Any]) -> Breach:
    lo, hi = data["interval"]
    return Breach(
        metric=data["metric"],
        e_value=float(data["e_value"]),
        estimate=float(data["estimate"]),
        interval=(float(lo), float(hi)),
        slice=data.get("slice"),
        slice_by=data.get("slice_by"),
        threshold=data.get("threshold"),
        confidence=data.get("confidence"),
        baseline=data.get("baseline"),
        limit=data.get("limit"),
        unit=data.get("unit", "fraction"),
    )


class Notifier(Protocol):
    """Delivers one notification to one endpoint, or raises NotifyError (DeliveryError).

    Called only by the outbox worker, never on the rollout path: a slow endpoint delays
    other announcements, never a rollback.
    """

    def send(self, notification: Notification) -> None: ...

    def close(self) -> None: ...


def channels_for(notify: Notify, event: str) -> list[str]:
    """The channels a policy sends ``event`` to: ``slack:ENV`` and/or ``webhook:ENV``."""
    channels = []
    if notify.slack is not None and event in notify.slack.events:
        channels.append(f"slack:{notify.slack.webhook_url_env}")
    if notify.webhook is not None and event in notify.webhook.events:
        channels.append(f"webhook:{notify.webhook.url_env}")
    return channels
