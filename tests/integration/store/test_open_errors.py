"""A store that cannot be opened or written says which, where and why: a StoreError, never a
raw SQLAlchemy traceback."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select, text, update

from canary.errors import StoreError
from canary.store.sql import SCHEMA_VERSION, SqlStore, schema_version, sqlite_url
from tests.harness.proc import free_port
from tests.integration.store.records import new_rollout

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Make ``paths`` read-only for this process, even as root (which ignores permission
    bits, but not the immutable attribute); skip where neither works (e.g. overlayfs)."""
    chattr = shutil.which("chattr") if os.geteuid() == 0 else None
    modes = {path: path.stat().st_mode for path in paths}
    try:
        for path in paths:
            path.chmod(modes[path] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
            if chattr is not None:
                subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)
        for path in paths:
            if _writable(path):
                pytest.skip(f"cannot make {path} read-only for this user on this file system")
        yield
    finally:
        for path in paths:
            if chattr is not None:
                subprocess.run([chattr, "-i", str(path)], capture_output=True, check=False)
            path.chmod(modes[path])


def _writable(path: Path) -> bool:
    try:
        if path.is_dir():
            probe = path / ".probe"
            probe.touch()
            probe.unlink()
        else:
            with path.open("ab"):
                pass
    except OSError:
        return False
    return True


def test_a_read_only_state_directory_gives_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with read_only(state), pytest.raises(StoreError) as caught:
        SqlStore(sqlite_url(state))
    error = str(caught.value)
    assert str(state / "canary.db") in error
    assert "unable to open database file" in error
    assert "may this user write it?" in error
    assert "sqlalche.me" not in error
    assert "[SQL:" not in error
    assert not (state / "canary.db").exists()


def test_a_read_only_database_gives_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    SqlStore(sqlite_url(state)).close()  # a good store, written once
    with read_only(state / "canary.db", state), pytest.raises(StoreError) as caught:
        SqlStore(sqlite_url(state))
    error = str(caught.value)
    assert str(state / "canary.db") in error
    # SQLite cannot create the WAL files next to the database, or cannot write the file.
    assert "may this user write it?" in error or "read-only for this user" in error
    assert "sqlalche.me" not in error
    assert "[SQL:" not in error
    # Writable again, the same store opens: the failure was the permission, nothing else.
    SqlStore(sqlite_url(state)).close()


def test_a_missing_state_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(StoreError, match=f"state directory {missing} does not exist"):
        SqlStore(sqlite_url(missing))


def test_a_full_database_is_refused_whole(tmp_path: Path) -> None:
    store = SqlStore(sqlite_url(tmp_path))
    try:
        rollout = new_rollout()
        store.save(rollout, expected_revision=0)

        # Cap the file at its current size, as a full disk would, on every new connection.
        @event.listens_for(store.engine, "connect")
        def _cap(dbapi_connection, _record) -> None:
            pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

        store.engine.dispose()
        big = rollout.replace(detail={"blob": "x" * 200_000}, reason="big")
        with pytest.raises(StoreError, match=r"database or disk is full \(free space"):
            store.save(big, expected_revision=1)
        stored = store.get(rollout.id)
        assert stored is not None
        assert (stored.rollout, stored.revision) == (rollout, 1)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nosuchdb://x/y", "unsupported database 'nosuchdb'"),
        ("mysql+pymysql://u@127.0.0.1/db", "unsupported database 'mysql'"),
        ("not a url at all", "invalid database URL <unparseable database URL>"),
        ("postgresql+psycopg://u:pw@host:port/db", "invalid database URL <unparseable"),
        ("sqlite://", "must be a file path"),
        ("sqlite:///:memory:", "must be a file path"),
    ],
)
def test_a_wrong_url_is_named(url: str, expected: str) -> None:
    with pytest.raises(StoreError, match=expected.replace("(", r"\(")):
        SqlStore(url)


def test_an_unreachable_postgresql_is_a_store_error_without_its_password() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://canary:hunter2secret@127.0.0.1:{free_port()}/canary"
    with pytest.raises(StoreError) as caught:
        SqlStore(url, connect_timeout=2)
    message = str(caught.value)
    assert "hunter2secret" not in message
    assert "canary:***@127.0.0.1" in message
    assert "connection refused" in message.lower()
    assert "is the database server running" in message


def test_a_store_from_a_newer_canary_is_refused(tmp_path: Path) -> None:
    store = SqlStore(sqlite_url(tmp_path))
    with store.engine.begin() as conn:
        conn.execute(update(schema_version).values(version=99))
    store.close()
    with pytest.raises(StoreError, match="schema version 99 was written by a newer canary"):
        SqlStore(sqlite_url(tmp_path))


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """Version 2 added the cursors table: a version 1 store gets it and keeps its data."""
    store = SqlStore(sqlite_url(tmp_path))
    with store.engine.begin() as conn:
        conn.execute(update(schema_version).values(version=1))
        conn.execute(text("DROP TABLE cursors"))
    store.close()
    upgraded = SqlStore(sqlite_url(tmp_path))
    try:
        with upgraded.engine.connect() as conn:
            assert conn.execute(select(schema_version.c.version)).scalar() == SCHEMA_VERSION
        assert upgraded.cursor("any") is None
    finally:
        upgraded.close()
