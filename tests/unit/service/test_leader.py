"""Leadership: when a controller may act, on a fake lock and a fake clock.

The keeper and watchdog threads are not started here (except in the one watchdog test):
the tests drive ``_attempt`` and ``_renew`` by hand so every instant is chosen, and the
rule the issue asks for, "a leader that loses its lease stops acting before another
starts", can be checked against the arithmetic of the lease.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from canary.errors import StoreError
from canary.service.leader import MARGIN, FileLeaderLock, Leadership, acting_until

LEASE = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLease:
    """A lease whose answers the test sets; it can also make a call 'take' time."""

    def __init__(self, clock: Clock, lease: float | None = LEASE) -> None:
        self.clock = clock
        self._lease = lease
        self.acquire_answer: int | None = 1
        self.renew_answer = True
        self.fail: StoreError | None = None
        self.call_takes = 0.0
        self.released = 0
        self.closed = False
        self.renewals = 0

    @property
    def where(self) -> str:
        return "fake"

    @property
    def lease(self) -> float | None:
        return self._lease

    def _call(self) -> None:
        self.clock.now += self.call_takes
        if self.fail is not None:
            raise self.fail

    def try_acquire(self) -> int | None:
        self._call()
        return self.acquire_answer

    def renew(self) -> bool:
        self.renewals += 1
        self._call()
        return self.renew_answer

    def release(self) -> None:
        self.released += 1

    def close(self) -> None:
        self.closed = True


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int, str]] = []

    def elected(self, epoch: int) -> None:
        self.events.append(("elected", epoch, ""))

    def lost(self, epoch: int, reason: str) -> None:
        self.events.append(("lost", epoch, reason))


def leadership(lock: FakeLease | FileLeaderLock, clock: Clock, rec: Recorder) -> Leadership:
    return Leadership(
        lock,
        on_elected=rec.elected,
        on_lost=rec.lost,
        renew_interval=LEASE / 3,
        retry_interval=1.0,
        clock=clock,
    )


def test_a_holder_acts_for_eighty_percent_of_the_lease_from_when_it_sent_the_request() -> None:
    assert MARGIN == 0.2
    assert acting_until(50.0, 10.0) == pytest.approx(58.0)
    assert acting_until(50.0, None) == float("inf")


def test_elected_when_the_lock_is_free_with_a_deadline_counted_from_the_sending() -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lock.call_takes = 1.5  # the answer arrives 1.5 s after the request left
    lead = leadership(lock, clock, rec)

    lead._attempt()

    assert rec.events == [("elected", 1, "")]
    assert lead.acting()
    assert lead.term is not None
    assert lead.term.until == pytest.approx(100.0 + 0.8 * LEASE)  # not 101.5 + ...
    clock.now = 107.99
    assert lead.acting()
    clock.now = 108.0
    assert not lead.acting()  # the guard alone refuses, before any watchdog runs


def test_no_term_when_another_holds_the_lock_or_the_database_cannot_be_reached() -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lead = leadership(lock, clock, rec)
    lock.acquire_answer = None
    lead._attempt()
    lock.acquire_answer, lock.fail = 1, StoreError("connection refused")
    lead._attempt()
    assert not lead.acting()
    assert rec.events == []


def test_an_answer_that_comes_after_the_would_be_deadline_starts_no_term() -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lock.call_takes = 0.8 * LEASE + 0.1
    lead = leadership(lock, clock, rec)
    lead._attempt()
    assert not lead.acting()
    assert rec.events == []


def test_a_renewal_extends_the_term_from_when_it_was_sent() -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lead = leadership(lock, clock, rec)
    lead._attempt()
    term = lead.term
    assert term is not None
    clock.now = 103.0
    lock.call_takes = 2.0
    lead._renew(term)
    assert lead.term is not None
    assert lead.term.epoch == 1
    assert lead.term.until == pytest.approx(103.0 + 0.8 * LEASE)
    assert rec.events == [("elected", 1, "")]


def test_a_renewal_that_finds_the_lease_taken_ends_the_term_at_once() -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lead = leadership(lock, clock, rec)
    lead._attempt()
    term = lead.term
    assert term is not None
    lock.renew_answer = False
    clock.now = 101.0
    lead._renew(term)
    assert not lead.acting()
    assert rec.events[-1][:2] == ("lost", 1)
    assert "taken over" in rec.events[-1][2]


def test_failed_renewals_keep_the_term_only_until_its_deadline() -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lead = leadership(lock, clock, rec)
    lead._attempt()
    lock.fail = StoreError("timeout")
    for now in (103.0, 106.0):
        clock.now = now
        term = lead.term
        assert term is not None
        lead._renew(term)
        assert lead.acting()
    clock.now = 108.0
    assert not lead.acting()


def test_a_renewal_answered_after_the_deadline_ends_the_term_rather_than_extending_it() -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lead = leadership(lock, clock, rec)
    lead._attempt()
    term = lead.term
    assert term is not None
    clock.now = 107.0
    lock.call_takes = 2.0  # answered at 109: the guard refused ticks from 108 on
    lead._renew(term)
    assert lead.term is None
    assert rec.events[-1][:2] == ("lost", 1)
    assert "too late" in rec.events[-1][2]


def test_a_term_ends_before_the_lease_it_last_wrote_can_expire_by_the_database_clock() -> None:
    """The property itself, over many delays: the database runs each renewal at some time
    after it was sent and sets the expiry from then, so a standby starts no earlier than
    that; the holder must have stopped acting by its own clock before it."""
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lead = leadership(lock, clock, rec)
    lead._attempt()
    db_expires = 100.0 + LEASE  # the database ran the acquire at once, at the earliest
    for delay in (0.0, 0.3, 1.0, 2.5, 4.0):
        term = lead.term
        assert term is not None
        clock.now = term.until - 0.8 * LEASE + LEASE / 3  # next renewal time
        if clock.now >= term.until:
            break
        sent = clock.now
        lock.call_takes = delay
        lead._renew(term)
        db_expires = sent + LEASE  # the earliest the database could have run it
        new = lead.term
        if new is None:
            break
        assert new.until < db_expires
        assert db_expires - new.until >= MARGIN * LEASE - 1e-9


def test_losing_then_winning_again_is_reported_in_order_with_a_new_epoch() -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lead = leadership(lock, clock, rec)
    lead._attempt()
    term = lead.term
    assert term is not None
    lock.renew_answer = False
    lead._renew(term)
    lock.acquire_answer = 2
    lead._attempt()
    assert [e[:2] for e in rec.events] == [("elected", 1), ("lost", 1), ("elected", 2)]
    assert lead.acting()


def test_a_retired_controller_hands_a_lease_it_wins_straight_back() -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lead = leadership(lock, clock, rec)
    lead.retire()
    lead._attempt()
    assert not lead.acting()
    assert lock.released == 1
    assert rec.events == []


@pytest.mark.parametrize("release", [True, False])
def test_stop_releases_only_when_asked(release: bool) -> None:
    clock, rec = Clock(), Recorder()
    lock = FakeLease(clock)
    lead = leadership(lock, clock, rec)
    lead._attempt()
    lead.stop(release=release, timeout=1)
    assert lock.released == (1 if release else 0)
    assert lock.closed
    assert not lead.acting()


def test_the_watchdog_ends_a_term_whose_renewals_hang() -> None:
    """Real threads and the real clock: renewals block forever (a half-open connection), so
    only the watchdog can end the term, at 80 % of a 0.5 s lease."""
    rec = Recorder()
    lost = threading.Event()
    hang = threading.Event()

    class HangingLease(FakeLease):
        def renew(self) -> bool:
            hang.wait(10)
            return True

    lock = HangingLease(Clock(), lease=0.5)

    def on_lost(epoch: int, reason: str) -> None:
        rec.lost(epoch, reason)
        lost.set()

    lead = Leadership(
        lock, on_elected=rec.elected, on_lost=on_lost, renew_interval=0.1, retry_interval=0.1
    )
    started = time.monotonic()
    assert lead.start()
    try:
        assert lost.wait(5)
        ended = time.monotonic() - started
        assert 0.35 <= ended < 0.5 + 0.5  # ends at 0.4 s, well before the lease could expire
        assert not lead.acting()
        assert "not renewed in time" in rec.events[-1][2]
    finally:
        hang.set()
        lead.stop(release=False, timeout=2)


def test_the_file_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    first, second = (
        FileLeaderLock(tmp_path / "canary.lock"),
        FileLeaderLock(tmp_path / "canary.lock"),
    )
    try:
        assert first.try_acquire() == 0
        assert second.try_acquire() is None
        assert first.renew()
        first.release()
        assert second.try_acquire() == 0
        assert (tmp_path / "canary.lock").read_text().strip().isdigit()
    finally:
        first.close()
        second.close()


def test_a_file_lock_in_a_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    lock = FileLeaderLock(tmp_path / "missing" / "canary.lock")
    with pytest.raises(StoreError, match="cannot open the leader lock"):
        lock.try_acquire()
