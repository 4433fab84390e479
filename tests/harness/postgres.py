"""A real PostgreSQL server for the tests, started once per session when it is installed.

PostgreSQL is optional (SQLite is the default store), so a missing server skips the tests
that need it, even under CI=true. The cluster lives in a fresh folder outside pytest's
temporary tree: ``initdb`` and ``postgres`` refuse to run as root, so when the tests run as
root they run as the ``postgres`` user, which cannot enter pytest's private folders. Durability
is switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``): a test cluster
that is thrown away needs speed, not crash safety. Each test gets its own schema.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.proc import ManagedProcess, free_port, wait_until

USER = "canary"
DATABASE = "canary_tests"


def find_postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding initdb, or initdb's folder on PATH."""
    versions = [
        d for d in Path("/usr/lib/postgresql").glob("*") if (d / "bin" / "initdb").is_file()
    ]
    if versions:
        newest = max(versions, key=lambda d: int(d.name) if d.name.isdigit() else 0)
        return newest / "bin"
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass
class PostgresServer:
    port: int
    workdir: Path
    process: ManagedProcess

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def url(self, schema: str | None = None) -> str:
        """SQLAlchemy URL of the test database, with ``schema`` first on the search path."""
        url = f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"
        return url if schema is None else f"{url}?options=-csearch_path%3D{schema}"

    def create_schema(self) -> str:
        """A fresh schema: isolates one test in milliseconds (a database takes ~0.5 s)."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(DATABASE), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return name

    def drop_schema(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(DATABASE), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL cannot be run here (not installed, or no user to run it as)."""


def _as_postgres_user(workdir: Path) -> list[str]:
    """The argv prefix that runs a PostgreSQL binary as a non-root user (empty if not root)."""
    if os.geteuid() != 0:
        return []
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailableError("running as root, and there is no postgres user") from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailableError("running as root, and runuser is missing")
    os.chown(workdir, account.pw_uid, account.pw_gid)
    return [runuser, "-u", "postgres", "--"]


def _connects(server: PostgresServer) -> bool:
    import psycopg

    with psycopg.connect(server.dsn(), connect_timeout=1):
        return True


@contextlib.contextmanager
def running_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    """initdb + postgres on a free loopback port; stopped (fast shutdown) and removed after.

    ``durable=False`` (tests) switches fsync off; benchmarks pass True to time real commits.
    """
    bindir = find_postgres_bin()
    if bindir is None:
        raise PostgresUnavailableError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
    try:
        import psycopg
    except ImportError:
        raise PostgresUnavailableError("psycopg is not installed") from None
    workdir = Path(tempfile.mkdtemp(prefix="canary-pg-"))
    try:
        prefix = _as_postgres_user(workdir)
        data = workdir / "data"
        init = subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                USER,
                "--no-sync",
                "-E",
                "UTF8",
                "--no-locale",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        port = free_port()
        fast = (
            []
            if durable
            else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        )
        process = ManagedProcess(
            name="postgres",
            argv=[
                *prefix,
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
                str(workdir),
                *fast,
            ],
            workdir=workdir,
        )
        server = PostgresServer(port=port, workdir=workdir, process=process.start())
        try:
            process.wait_ready(lambda: _connects(server), timeout=60)
            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
            yield server
        finally:
            # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients to leave).
            process.signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: not process.running, timeout=15, what="postgres shutdown")
            process.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL; tests that need it skip where it cannot run (optional)."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL whose tables land in a fresh, empty schema of their own; dropped after."""
    name = postgres_server.create_schema()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_schema(name)
