"""The lease row's statements on a real PostgreSQL: who may take, renew and release it.

Two ``PostgresLease`` objects stand for two controllers; the lease is short (1 s) so an
expiry can be waited for. The daemon-level behaviour (who ticks when) is in
tests/integration/service/test_leader_postgres.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from canary.errors import StoreError
from canary.service.leader import PostgresLease

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(postgres_url: str) -> Iterator[tuple[PostgresLease, PostgresLease]]:
    a = PostgresLease(postgres_url, lease=1.0, io_timeout=2.0, holder="a")
    b = PostgresLease(postgres_url, lease=1.0, io_timeout=2.0, holder="b")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_one_holder_at_a_time_and_a_new_epoch_for_every_acquisition(
    pair: tuple[PostgresLease, PostgresLease],
) -> None:
    a, b = pair
    assert a.try_acquire() == 1
    assert b.try_acquire() is None
    assert a.renew()
    assert b.try_acquire() is None
    a.release()
    assert not a.renew()  # a released lease is not renewed back to life
    assert b.try_acquire() == 2
    assert a.try_acquire() is None


def test_an_expired_lease_can_be_taken_and_its_old_holder_cannot_renew_it(
    pair: tuple[PostgresLease, PostgresLease],
) -> None:
    a, b = pair
    assert a.try_acquire() == 1
    time.sleep(1.2)
    assert b.try_acquire() == 2
    assert not a.renew()
    assert a.epoch is None
    assert b.renew()


def test_an_expired_lease_is_not_renewed_even_by_its_own_holder(
    pair: tuple[PostgresLease, PostgresLease],
) -> None:
    a, _ = pair
    assert a.try_acquire() == 1
    time.sleep(1.2)
    assert not a.renew()  # lapsed: taking it back is a new acquisition, a new epoch
    assert a.try_acquire() == 2


def test_standbys_racing_for_an_expired_lease_elect_exactly_one(postgres_url: str) -> None:
    holder = PostgresLease(postgres_url, lease=0.5, io_timeout=2.0, holder="old")
    racers = [
        PostgresLease(postgres_url, lease=30.0, io_timeout=2.0, holder=f"r{i}") for i in range(6)
    ]
    try:
        assert holder.try_acquire() == 1
        for racer in racers:  # table exists; connections warm
            assert racer.try_acquire() is None
        time.sleep(0.7)
        results: list[int | None] = [None] * len(racers)
        go = threading.Barrier(len(racers))

        def race(i: int) -> None:
            go.wait()
            results[i] = racers[i].try_acquire()

        threads = [threading.Thread(target=race, args=(i,)) for i in range(len(racers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [r for r in results if r is not None]
        assert winners == [2]
    finally:
        for lease in [holder, *racers]:
            lease.close()


def test_an_unreachable_database_is_a_store_error_without_the_password() -> None:
    lease = PostgresLease(
        "postgresql+psycopg://canary:s3cret@127.0.0.1:9/canary", lease=3.0, io_timeout=1.0
    )
    try:
        with pytest.raises(StoreError) as caught:
            lease.try_acquire()
        assert "s3cret" not in str(caught.value)
        assert "***" in lease.where
    finally:
        lease.close()
