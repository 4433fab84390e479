"""A recording HTTP endpoint and a SQLite store for each notification test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from canary.store.sql import SqlStore, sqlite_url
from tests.integration.notify.sink import Sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def store(state_dir: Path) -> Iterator[SqlStore]:
    store = SqlStore(sqlite_url(state_dir))
    yield store
    store.close()
