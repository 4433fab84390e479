"""The same store tests on a SQLite file and on a real PostgreSQL (skipped when absent)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from canary.store.sql import SqlStore, sqlite_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    # Only the PostgreSQL cases start (or skip for) the session's PostgreSQL server.
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[[], SqlStore]]:
    """Opens stores on the same database, like several controllers would; closes them all."""
    opened: list[SqlStore] = []

    def make() -> SqlStore:
        store = SqlStore(store_url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], SqlStore]) -> SqlStore:
    return open_store()
