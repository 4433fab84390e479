"""The Notification record: validation, the dedupe key, and its outbox round trip."""

from __future__ import annotations

import json
import math

import pytest

from canary.core.lifecycle import Phase, Rollout, transition
from canary.core.policy import ALL_EVENTS, Notify, SlackNotify, WebhookNotify
from canary.notify.base import Breach, DatasetRef, Notification, Provenance, channels_for
from tests.unit.notify.samples import ERRORS_B, plain, rollback


def rollout() -> Rollout:
    return Rollout(id="r-42", model="credit-risk", version="7", champion_version="6")


def test_dedupe_key_is_rollout_event_step_and_sequence() -> None:
    assert rollback().dedupe_key == "r-42/rolled_back/2/7"


def test_the_same_transition_gives_the_same_key_after_a_restart() -> None:
    """A tick that crashed before saving runs again: same transition, same revision."""
    base = rollout().replace(phase=Phase.STARTING)
    keys = set()
    for _ in range(2):
        moved, record = transition(
            base, Phase.PROGRESSING, reason="first step", at=10.0, step=1, canary_weight=1.0
        )
        keys.add(Notification.from_transition(moved, record, sequence=4).dedupe_key)
    assert keys == {"r-42/started/1/4"}


def test_pausing_twice_at_one_step_gives_two_keys() -> None:
    """The sequence tells apart the same event at the same step."""
    first = plain("paused", sequence=5)
    second = plain("paused", sequence=7)
    assert first.step == second.step
    assert first.dedupe_key != second.dedupe_key


def test_from_transition_copies_the_rollout_and_the_transition() -> None:
    base = rollout().replace(phase=Phase.PROGRESSING, step=2, canary_weight=5.0)
    moved, record = transition(base, Phase.PAUSED, reason="operator", at=123.5)
    n = Notification.from_transition(
        moved, record, sequence=9, breaches=[ERRORS_B], status_url="https://canary.example/r"
    )
    assert (n.event, n.rollout_id, n.model, n.version, n.champion_version) == (
        "paused",
        "r-42",
        "credit-risk",
        "7",
        "6",
    )
    assert (n.step, n.weight, n.reason, n.at, n.sequence) == (2, 5.0, "operator", 123.5, 9)
    assert n.breaches == (ERRORS_B,)


def test_a_transition_without_an_event_is_not_announced() -> None:
    moved, record = transition(rollout(), Phase.GATING, reason="x", at=1.0)
    assert record.event is None
    with pytest.raises(ValueError, match="not announced"):
        Notification.from_transition(moved, record, sequence=2)


def test_outbox_round_trip_keeps_every_field() -> None:
    n = rollback(
        breaches=(ERRORS_B, Breach("latency", math.inf, 0.25, (0.2, 0.3), unit="seconds")),
        provenance=Provenance("ab12", (DatasetRef("a", "d1"), DatasetRef("b", "", "eval"))),
    )
    data = json.loads(json.dumps(n.to_dict(), allow_nan=False))  # what the store keeps
    assert data["breaches"][1]["e_value"] == "inf"
    assert Notification.from_dict(data) == n


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_every_policy_event_is_a_notification_event(event: str) -> None:
    assert plain(event).event == event


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event": "exploded"}, "unknown event"),
        ({"model": "bad model"}, "model name"),
        ({"version": "v7"}, "model version"),
        ({"champion_version": "0"}, "champion version"),
        ({"rollout_id": "r 42"}, "rollout id"),
        ({"weight": 101.0}, "percentage"),
        ({"step": -1}, ">= 0"),
        ({"status_url": "javascript:alert(1)"}, "status page URL"),
        ({"status_url": "https://x/a|click here"}, "status page URL"),
        ({"status_url": "https://x/<!channel>"}, "status page URL"),
    ],
)
def test_invalid_notifications_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rollback(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metric": "Errors!"}, "metric name"),
        ({"slice": "b c"}, "slice value"),
        ({"slice_by": "__name__"}, "slice label"),
        ({"interval": (0.03, 0.01)}, "reversed"),
        ({"estimate": math.nan}, "NaN"),
        ({"interval": (0.01, math.nan)}, "NaN"),
        ({"baseline": math.inf}, "finite"),
        ({"e_value": -1.0}, "e-value"),
        ({"confidence": 95.0}, "confidence"),
        ({"unit": "percent"}, "unit"),
    ],
)
def test_invalid_breaches_are_refused(changes: dict[str, object], message: str) -> None:
    fields = {**ERRORS_B.__dict__, **changes}
    with pytest.raises(ValueError, match=message):
        Breach(**fields)


def test_dataset_text_is_one_short_line() -> None:
    with pytest.raises(ValueError, match="dataset name"):
        DatasetRef("two\nlines")
    with pytest.raises(ValueError, match="run id"):
        Provenance(run_id="../../etc")


def test_channels_follow_the_policy() -> None:
    notify = Notify(
        slack=SlackNotify(events=["rolled_back", "promoted"]),
        webhook=WebhookNotify(url_env="TEAM_HOOK"),
    )
    assert channels_for(notify, "rolled_back") == [
        "slack:CANARY_SLACK_WEBHOOK_URL",
        "webhook:TEAM_HOOK",
    ]
    assert channels_for(notify, "advanced") == ["webhook:TEAM_HOOK"]
    assert channels_for(Notify(), "rolled_back") == []
