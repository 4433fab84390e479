"""Notifications from the store to a real HTTP endpoint, through the outbox worker thread."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from canary.core.lifecycle import Phase, Rollout, transition
from canary.notify.base import Breach, DatasetRef, DeliveryError, Notification, Provenance
from canary.notify.outbox import EnvChannels, Outbox
from canary.notify.webhook import WebhookNotifier
from canary.store.base import DeliveryStatus, OutboxItem
from canary.store.sql import SqlStore, sqlite_url
from tests.harness.proc import free_port, wait_until
from tests.integration.notify.sink import HANG, Sink

pytestmark = pytest.mark.integration

SECRET = "s3cr3tTOKENxyz"
SLACK_PATH = f"/services/T0CANARY/B0CANARY/{SECRET}"
HOOK_PATH = f"/hooks/canary?token={SECRET}"

BREACH = Breach(
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


def environ(sink: Sink) -> dict[str, str]:
    return {"SLACK_URL": sink.url(SLACK_PATH), "HOOK_URL": sink.url(HOOK_PATH)}


@pytest.fixture
def channels(sink: Sink) -> Iterator[EnvChannels]:
    resolver = EnvChannels(environ=environ(sink), timeout=1.0)
    yield resolver
    resolver.close()


def make_outbox(store: SqlStore, channels: EnvChannels, **options) -> Outbox:
    settings: dict[str, Any] = {
        "base_delay": 0.05,
        "max_delay": 0.2,
        "poll_interval": 0.05,
        "lease": 30.0,
    }
    settings.update(options)
    return Outbox(store, channels, **settings)


def progressing(store: SqlStore) -> tuple[Rollout, int]:
    rollout = Rollout(
        id="r-42",
        model="credit-risk",
        version="7",
        champion_version="6",
        phase=Phase.PROGRESSING,
        step=2,
        canary_weight=5.0,
    )
    return rollout, store.save(rollout, expected_revision=0)


def roll_back(
    store: SqlStore, rollout: Rollout, revision: int, channels: list[str]
) -> Notification:
    """What the daemon does on a breach: two transitions, the second one announced, saved
    with its notification in one transaction."""
    stopping, record = transition(
        rollout,
        Phase.ROLLING_BACK,
        reason="errors regressed",
        at=time.time(),
        rollback_to=Phase.ROLLED_BACK,
    )
    revision = store.save(stopping, expected_revision=revision, transition=record)
    done, record = transition(
        stopping, Phase.ROLLED_BACK, reason="errors regressed", at=time.time(), canary_weight=0.0
    )
    notification = Notification.from_transition(
        done,
        record,
        sequence=revision + 1,
        breaches=[BREACH],
        provenance=Provenance("ab12cd34", (DatasetRef("credit-2024", "1a2b3c", "training"),)),
    )
    store.save(
        done,
        expected_revision=revision,
        transition=record,
        notifications=Outbox.entries(notification, channels),
    )
    return notification


def started(sequence: int) -> Notification:
    return Notification(
        event="started",
        rollout_id="r-42",
        model="credit-risk",
        version="7",
        champion_version="6",
        step=1,
        weight=1.0,
        reason="first step",
        at=time.time(),
        sequence=sequence,
    )


def items(store: SqlStore) -> dict[str, OutboxItem]:
    return {f"{i.entry.channel} {i.entry.dedupe_key}": i for i in store.notifications()}


def all_settled(store: SqlStore) -> bool:
    return all(i.status is not DeliveryStatus.PENDING for i in store.notifications())


def test_a_rollback_arrives_on_slack_and_the_webhook_with_its_evidence(
    store: SqlStore, sink: Sink, channels: EnvChannels
) -> None:
    rollout, revision = progressing(store)
    with make_outbox(store, channels) as outbox:
        notification = roll_back(store, rollout, revision, ["slack:SLACK_URL", "webhook:HOOK_URL"])
        outbox.wake()
        wait_until(lambda: all_settled(store), timeout=10, what="deliveries")

    by_path = {r.path: r for r in sink.delivered()}
    assert set(by_path) == {SLACK_PATH, HOOK_PATH}
    evidence = (
        "errors (group b): canary 2.1% vs tolerance 1.5%, 95% interval [1.6%, 2.7%], "
        "e-value 41 ≥ 20"
    )
    slack = by_path[SLACK_PATH].body
    assert (
        slack["blocks"][0]["text"]["text"] == ":rotating_light: Rolled back: credit-risk version 7"
    )
    assert f"• {evidence}" in slack["blocks"][3]["text"]["text"]
    assert evidence in slack["text"]
    assert "trained on dataset credit-2024 (digest 1a2b3c)" in slack["text"]

    hook = by_path[HOOK_PATH]
    assert hook.headers["Idempotency-Key"] == notification.dedupe_key
    [breach] = hook.body["breaches"]
    assert (breach["metric"], breach["slice_by"], breach["slice"]) == ("errors", "group", "b")
    assert (breach["estimate"], breach["interval"]) == (0.021, [0.016, 0.027])
    assert breach["description"] == evidence
    assert hook.body["event"] == "rolled_back"
    assert hook.body["schema_version"] == 1

    assert [i.status for i in store.notifications()] == [DeliveryStatus.SENT] * 2
    assert [t.to_phase for t in store.transitions("r-42")] == [
        Phase.ROLLING_BACK,
        Phase.ROLLED_BACK,
    ]


def test_a_500_is_retried_and_recorded(store: SqlStore, sink: Sink, channels: EnvChannels) -> None:
    sink.answer(500, 500)
    with make_outbox(store, channels) as outbox:
        outbox.record(started(2), ["webhook:HOOK_URL"])
        wait_until(lambda: all_settled(store), timeout=10, what="delivery after retries")
    assert [r.answered for r in sink.requests] == [500, 500, 200]
    assert len({r.headers["Idempotency-Key"] for r in sink.requests}) == 1
    assert sink.requests[0].body == sink.requests[2].body
    [item] = store.notifications()
    assert (item.status, item.attempts) == (DeliveryStatus.SENT, 3)
    assert item.last_error == "webhook: 127.0.0.1 answered HTTP 500: server_error"


def test_an_endpoint_that_keeps_failing_is_given_up(
    store: SqlStore, sink: Sink, channels: EnvChannels
) -> None:
    sink.default = 503
    with make_outbox(store, channels, max_attempts=3) as outbox:
        outbox.record(started(2), ["slack:SLACK_URL"])
        wait_until(lambda: all_settled(store), timeout=10, what="giving up")
    [item] = store.notifications()
    assert (item.status, item.attempts) == (DeliveryStatus.FAILED, 3)
    assert item.last_error == "slack: 127.0.0.1 answered HTTP 503: server_error"
    assert sink.count() == 3


def test_a_hanging_endpoint_never_blocks_the_rollback(
    store: SqlStore, sink: Sink, channels: EnvChannels
) -> None:
    sink.answer(HANG)
    rollout, revision = progressing(store)
    with make_outbox(store, channels) as outbox:
        outbox.record(started(1), ["webhook:HOOK_URL"])
        assert sink.hanging.wait(10), "the worker never reached the endpoint"
        # The worker is now stuck in a request for up to its 1 s timeout. The rollback path:
        began = time.perf_counter()
        roll_back(store, rollout, revision, ["webhook:HOOK_URL"])
        outbox.wake()
        caller_seconds = time.perf_counter() - began
        assert caller_seconds < 0.5, f"the rollback path waited {caller_seconds:.3f}s"
        wait_until(lambda: all_settled(store), timeout=15, what="deliveries after the hang")
    first, second = store.notifications()
    assert first.entry.event == "started"
    assert first.last_error is not None
    assert first.last_error.startswith("webhook: no answer from 127.0.0.1 within 1s")
    assert first.attempts == 2
    assert (first.status, second.status) == (DeliveryStatus.SENT, DeliveryStatus.SENT)


def test_the_secret_url_never_reaches_logs_or_errors(
    store: SqlStore, sink: Sink, channels: EnvChannels
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/refused/{SECRET}"
    resolver = EnvChannels(environ={**environ(sink), "CLOSED_URL": closed}, timeout=0.5)
    sink.answer(500, HANG, 404)
    try:
        with structlog.testing.capture_logs() as logs:
            with make_outbox(store, resolver, max_attempts=3) as outbox:
                outbox.record(started(1), ["slack:SLACK_URL", "webhook:CLOSED_URL"])
                wait_until(lambda: all_settled(store), timeout=15, what="failures")
            with pytest.raises(DeliveryError) as caught:
                WebhookNotifier(closed, timeout=0.5).send(started(1))
    finally:
        resolver.close()
    # The failures happened, and were logged...
    events = [entry["event"] for entry in logs]
    assert events.count("notify.retry_scheduled") >= 3
    assert "notify.gave_up" in events
    assert [r.answered for r in sink.requests] == [500, HANG, 404]
    # ...and neither the logs, nor the stored errors, nor the exception name the secret.
    assert SECRET not in repr(logs)
    stored = [i.last_error or "" for i in store.notifications()]
    assert any("HTTP 404" in e for e in stored)
    assert any("ConnectError" in e for e in stored)
    assert not any(SECRET in e for e in stored)
    assert "ConnectError" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_restarted_daemon_resends_what_is_pending_and_nothing_else(
    state_dir: Path, sink: Sink, channels: EnvChannels
) -> None:
    url = sqlite_url(state_dir)
    store = SqlStore(url)
    outbox = make_outbox(store, channels, max_attempts=50).start()
    outbox.record(started(1), ["webhook:HOOK_URL"])
    wait_until(lambda: all_settled(store), timeout=10, what="first delivery")
    sink.default = 500  # the endpoint goes down
    outbox.record(started(2), ["webhook:HOOK_URL"])
    outbox.record(started(3), ["webhook:HOOK_URL"])
    wait_until(
        lambda: all(i.attempts >= 1 for i in store.notifications()),
        timeout=10,
        what="failed attempts",
    )
    assert outbox.stop()  # the daemon stops...
    store.close()
    assert {i.entry.dedupe_key: i.status for i in SqlStore(url).notifications()} == {
        "r-42/started/1/1": DeliveryStatus.SENT,
        "r-42/started/1/2": DeliveryStatus.PENDING,
        "r-42/started/1/3": DeliveryStatus.PENDING,
    }

    sink.default = 200  # ...the endpoint recovers, and a new daemon starts on the same state
    store = SqlStore(url)
    try:
        with make_outbox(store, channels) as again:
            # Rebuilding the same events after the restart records nothing new.
            assert again.record(started(1), ["webhook:HOOK_URL"]) == 0
            assert again.record(started(2), ["webhook:HOOK_URL"]) == 0
            wait_until(lambda: all_settled(store), timeout=10, what="resumed deliveries")
            assert again.deliver_due() == 0
    finally:
        store.close()
    keys = [r.headers["Idempotency-Key"] for r in sink.delivered()]
    assert keys == ["r-42/started/1/1", "r-42/started/1/2", "r-42/started/1/3"]


def test_a_delivery_cut_off_by_a_crash_is_sent_after_its_lease(
    store: SqlStore, sink: Sink, channels: EnvChannels
) -> None:
    lease = 60.0
    store.enqueue(Outbox.entries(started(1), ["webhook:HOOK_URL"]))
    [claimed] = store.claim_due(now=time.time(), lease=lease, limit=5)  # then the worker died
    fresh = make_outbox(store, channels, lease=lease)
    assert fresh.deliver_due() == 0  # still leased to the dead worker
    later = make_outbox(store, channels, lease=lease, clock=lambda: time.time() + lease + 1)
    assert later.deliver_due() == 1
    [item] = store.notifications()
    assert (item.status, item.attempts) == (DeliveryStatus.SENT, claimed.attempts + 1)
    assert len(sink.delivered()) == 1


def test_stopping_an_idle_worker_is_prompt(store: SqlStore, channels: EnvChannels) -> None:
    outbox = make_outbox(store, channels, poll_interval=30.0).start()
    began = time.perf_counter()
    assert outbox.stop(timeout=5)
    assert time.perf_counter() - began < 1.0
