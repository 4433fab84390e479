"""The outbox tables: dedupe, claiming with a lease, and delivery outcomes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from canary.core.lifecycle import Phase, transition
from canary.store.base import DeliveryStatus, OutboxEntry
from canary.store.sql import SqlStore
from tests.integration.store.records import new_rollout

pytestmark = pytest.mark.integration


def entry(key: str = "r-1/started/1/4", channel: str = "slack:HOOK") -> OutboxEntry:
    return OutboxEntry(key, channel, "r-1", "started", {"event": "started", "n": [1, 2]})


def test_notifications_are_saved_with_their_transition(store: SqlStore) -> None:
    rollout = new_rollout()
    store.save(rollout, expected_revision=0)
    moved, record = transition(rollout, Phase.GATING, reason="x", at=2.0)
    entries = [entry(), entry(channel="webhook:HOOK")]
    store.save(moved, expected_revision=1, transition=record, notifications=entries, now=50.0)
    items = store.notifications(rollout_id="r-1")
    assert [i.entry for i in items] == entries
    assert all(i.status is DeliveryStatus.PENDING for i in items)
    assert [(i.attempts, i.created_at, i.next_attempt_at, i.sent_at) for i in items] == [
        (0, 50.0, 50.0, None)
    ] * 2


def test_a_known_dedupe_key_is_never_recorded_twice(store: SqlStore) -> None:
    store.save(new_rollout(), expected_revision=0)
    assert store.enqueue([entry()], now=1.0) == 1
    assert store.enqueue([entry()], now=2.0) == 0
    assert store.enqueue([entry(), entry(channel="webhook:HOOK")], now=3.0) == 1
    [item] = store.claim_due(now=10.0, lease=30.0, limit=1)
    store.mark_sent(item.id, at=11.0)
    assert store.enqueue([entry()], now=12.0) == 0  # sent: stays sent, never pending again
    statuses = [(i.entry.channel, i.status) for i in store.notifications()]
    assert statuses == [
        ("slack:HOOK", DeliveryStatus.SENT),
        ("webhook:HOOK", DeliveryStatus.PENDING),
    ]


def test_claims_take_due_entries_once_and_hold_them_for_the_lease(
    open_store: Callable[[], SqlStore],
) -> None:
    one, two = open_store(), open_store()
    one.enqueue([entry(f"r-1/started/1/{i}") for i in range(5)], now=100.0)
    assert one.claim_due(now=99.0, lease=30.0, limit=10) == []  # not due yet
    first = one.claim_due(now=100.0, lease=30.0, limit=3)
    second = two.claim_due(now=100.0, lease=30.0, limit=10)
    assert [i.entry.dedupe_key[-1] for i in first] == ["0", "1", "2"]
    assert [i.entry.dedupe_key[-1] for i in second] == ["3", "4"]
    assert all(i.attempts == 1 and i.next_attempt_at == 130.0 for i in first + second)
    assert one.claim_due(now=129.0, lease=30.0, limit=10) == []  # leased
    again = two.claim_due(now=130.0, lease=30.0, limit=10)  # a dead worker's lease ran out
    assert len(again) == 5
    assert all(i.attempts == 2 for i in again)


def test_failures_are_retried_or_given_up_and_recorded(store: SqlStore) -> None:
    store.enqueue([entry("a/started/0/1"), entry("b/started/0/1")], now=0.0)
    a, b = store.claim_due(now=0.0, lease=60.0, limit=2)
    store.mark_failed(a.id, error="HTTP 500", at=1.0, retry_at=5.0)
    store.mark_failed(b.id, error="HTTP 404 no_service", at=1.0)
    by_key = {i.entry.dedupe_key: i for i in store.notifications()}
    retry, gone = by_key["a/started/0/1"], by_key["b/started/0/1"]
    assert (retry.status, retry.last_error, retry.next_attempt_at) == (
        DeliveryStatus.PENDING,
        "HTTP 500",
        5.0,
    )
    assert (gone.status, gone.last_error, gone.attempts) == (
        DeliveryStatus.FAILED,
        "HTTP 404 no_service",
        1,
    )
    assert [i.entry.dedupe_key for i in store.claim_due(now=5.0, lease=60.0, limit=5)] == [
        "a/started/0/1"
    ]
    assert store.notifications(status=DeliveryStatus.FAILED) == [gone]


def test_a_channel_that_looks_like_a_url_is_refused(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="notification channel"):
        store.enqueue([entry(channel="https://hooks.slack.com/services/T/B/secret")])
    assert store.notifications() == []
