"""The outbox's retry rules, one pass at a time, with a fake notifier and a manual clock.

The store is a real SQLite file (it is cheap); the worker thread and real HTTP endpoints are
exercised in tests/integration/notify.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from canary.errors import NotifyError
from canary.notify.base import DeliveryError, Notification, Notifier
from canary.notify.outbox import Outbox
from canary.store.base import DeliveryStatus, OutboxItem
from canary.store.sql import SqlStore, sqlite_url
from tests.unit.notify.samples import plain, rollback


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeNotifier:
    """Answers with the scripted outcomes in order (None: delivered), then delivers."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        self.sent.append(notification)

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore(sqlite_url(tmp_path))
    yield store
    store.close()


def outbox(store: SqlStore, notifier: Notifier | None, clock: Clock, **options) -> Outbox:
    return Outbox(
        store,
        lambda channel: notifier if channel == "slack:HOOK" else None,
        clock=clock,
        rng=random.Random(7),
        **options,
    )


def only(store: SqlStore) -> OutboxItem:
    [item] = store.notifications()
    return item


def test_a_delivered_notification_is_marked_sent(store: SqlStore) -> None:
    clock, notifier = Clock(), FakeNotifier()
    box = outbox(store, notifier, clock)
    assert box.record(rollback(), ["slack:HOOK"]) == 1
    assert box.deliver_due() == 1
    assert notifier.sent == [rollback()]
    item = only(store)
    assert (item.status, item.attempts, item.sent_at, item.last_error) == (
        DeliveryStatus.SENT,
        1,
        1000.0,
        None,
    )
    assert box.deliver_due() == 0
    assert box.record(rollback(), ["slack:HOOK"]) == 0  # known key: not again


def test_failures_back_off_exponentially_then_give_up(store: SqlStore) -> None:
    clock = Clock()
    failures = [DeliveryError(f"HTTP 500 #{i}") for i in range(4)]
    notifier = FakeNotifier(*failures)
    box = outbox(store, notifier, clock, max_attempts=4, base_delay=2.0, max_delay=5.0)
    box.record(rollback(), ["slack:HOOK"])
    waits = []
    for attempt in range(1, 5):
        before = clock.now
        assert box.deliver_due() == 1
        item = only(store)
        assert item.attempts == attempt
        assert item.last_error == f"HTTP 500 #{attempt - 1}"
        if attempt < 4:
            assert item.status is DeliveryStatus.PENDING
            waits.append(item.next_attempt_at - before)
            clock.now = item.next_attempt_at - 0.001
            assert box.deliver_due() == 0  # not due a moment before
            clock.now = item.next_attempt_at
    assert only(store).status is DeliveryStatus.FAILED
    assert notifier.sent == []
    # Each wait is the capped doubling delay, of which the upper half is random.
    for wait, nominal in zip(waits, [2.0, 4.0, 5.0], strict=True):
        assert nominal / 2 <= wait <= nominal
    assert box.deliver_due() == 0  # failed for good: never claimed again


def test_backoff_spreads_retries_between_half_and_the_full_delay() -> None:
    box = Outbox(
        None,  # type: ignore[arg-type]
        lambda channel: None,
        base_delay=1.0,
        max_delay=60.0,
        rng=random.Random(1),
    )
    for attempt, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (20, 60.0)]:
        delays = [box.backoff(attempt) for _ in range(2000)]
        assert min(delays) >= nominal / 2
        assert max(delays) <= nominal
        # jitter really spreads them: the two halves of the range are both used
        assert sum(d < nominal * 0.75 for d in delays) > 800
        assert sum(d > nominal * 0.75 for d in delays) > 800


def test_an_answer_that_cannot_change_is_not_retried(store: SqlStore) -> None:
    clock = Clock()
    notifier = FakeNotifier(DeliveryError("HTTP 404 no_service", retryable=False))
    box = outbox(store, notifier, clock)
    box.record(rollback(), ["slack:HOOK"])
    box.deliver_due()
    item = only(store)
    assert (item.status, item.attempts, item.last_error) == (
        DeliveryStatus.FAILED,
        1,
        "HTTP 404 no_service",
    )


def test_the_endpoints_retry_after_is_respected(store: SqlStore) -> None:
    clock = Clock()
    notifier = FakeNotifier(DeliveryError("HTTP 429", retry_after=120.0))
    box = outbox(store, notifier, clock, base_delay=1.0)
    box.record(rollback(), ["slack:HOOK"])
    box.deliver_due()
    assert only(store).next_attempt_at == 1120.0


def test_an_unconfigured_channel_is_retried_with_a_clear_error(store: SqlStore) -> None:
    clock = Clock()
    box = outbox(store, FakeNotifier(), clock)
    box.record(rollback(), ["webhook:NOT_SET"])
    box.deliver_due()
    item = only(store)
    assert item.status is DeliveryStatus.PENDING
    assert item.last_error == "channel webhook:NOT_SET is not configured (is its variable set?)"


def test_a_notifier_bug_is_recorded_and_the_next_entry_still_goes(store: SqlStore) -> None:
    clock = Clock()
    notifier = FakeNotifier(RuntimeError("bug"), None)
    box = outbox(store, notifier, clock)
    box.record(plain("started", sequence=1), ["slack:HOOK"])
    box.record(plain("advanced", sequence=2), ["slack:HOOK"])
    assert box.deliver_due() == 2
    first, second = store.notifications()
    assert first.status is DeliveryStatus.PENDING
    assert first.last_error == "unexpected RuntimeError in the slack:HOOK notifier"
    assert second.status is DeliveryStatus.SENT


def test_a_plain_notify_error_is_retried(store: SqlStore) -> None:
    clock = Clock()
    box = outbox(store, FakeNotifier(NotifyError("down")), clock)
    box.record(rollback(), ["slack:HOOK"])
    box.deliver_due()
    assert (only(store).status, only(store).last_error) == (DeliveryStatus.PENDING, "down")


def test_an_unreadable_stored_notification_fails_for_good(store: SqlStore) -> None:
    clock = Clock()
    box = outbox(store, FakeNotifier(), clock)
    entry = Outbox.entries(rollback(), ["slack:HOOK"])[0]
    broken = dataclasses.replace(entry, payload={"event": "rolled_back"})
    store.enqueue([broken], now=clock.now)
    box.deliver_due()
    item = only(store)
    assert item.status is DeliveryStatus.FAILED
    assert item.last_error is not None
    assert item.last_error.startswith("unreadable notification: KeyError")


def test_entries_carry_one_channel_each_and_the_dedupe_key() -> None:
    entries = Outbox.entries(rollback(), ["slack:A", "webhook:B"])
    assert [(e.channel, e.dedupe_key, e.event, e.rollout_id) for e in entries] == [
        ("slack:A", "r-42/rolled_back/2/7", "rolled_back", "r-42"),
        ("webhook:B", "r-42/rolled_back/2/7", "rolled_back", "r-42"),
    ]
    assert Notification.from_dict(entries[0].payload) == rollback()
