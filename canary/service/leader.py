"""One controller acts on a store at a time: the leader lock, and how leadership is kept.

Two locks behind one small interface (:class:`LeaderLock`), picked by the store:

- :class:`FileLeaderLock` (SQLite store): an ``flock`` on ``canary.lock`` next to the
  database file. Every controller that can write the store sees the lock, and the kernel
  drops it when the holder dies, however it dies, so there is nothing to renew or expire.
- :class:`PostgresLease` (PostgreSQL store): controllers on different machines share only
  the database, so the lock lives there, as a lease row naming the holder and an expiry
  written with the database's clock. A session advisory lock would be simpler, but it is
  released when PostgreSQL notices that the holder's connection dropped, and nothing tells
  the holder when that was: a paused process or a half-open connection keeps acting. A
  lease bounds both sides.

Why a lease holder stops acting before anyone else starts (:class:`Leadership` enforces it):
a renewal sent at the holder's monotonic time ``s`` runs in the database at some real time
``x >= s`` and sets ``expires_at = db_clock(x) + E``. The holder acts only until
``s + (1 - MARGIN) * E`` by its own monotonic clock: a guard refuses any tick after that
instant, and a watchdog thread takes the jobs away then, even if the renewing thread is
stuck in a network call. A standby's take-over is one statement that matches only when the
database's clock has passed ``expires_at``, so it starts no earlier than ``x + E``. The
holder therefore stops at least ``MARGIN * E`` (3 s with the default 15 s lease) before
anyone else may start, provided the database's clock and the holder's monotonic clock run at
the same rate within 20 % (real clocks differ by parts per million; a step of the database
server's wall clock is the one thing to avoid: keep it slewed by NTP, never stepped).

A tick that passed the guard before that instant is allowed to finish: stopping it halfway
would leave the proxy and the store disagreeing for longer. Whatever it writes is
conditional on the revision it read (the store's second fence), so if a new leader has
moved the rollout meanwhile, its write is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from canary.errors import CanaryError, StoreError
from canary.log import get_logger
from canary.settings import Settings

log = get_logger(__name__)

MARGIN = 0.2
"""Share of the lease a holder gives up at the end: it acts for 80 % of the lease after its
last renewal was sent, so it has stopped well before a standby may take the lease over."""

LEASE_NAME = "controller"
"""The one lease row of a store: every controller on the store competes for it."""

_TABLE_LOCK = 0x63616E6C6561  # "canlea": advisory lock held while creating the lease table


class LeaderLock(Protocol):
    """Exclusive right to act on one store; implementations say how it is held and lost."""

    @property
    def where(self) -> str:
        """Where the lock is, for logs (a path or a URL with its password hidden)."""
        ...

    @property
    def lease(self) -> float | None:
        """Seconds a successful acquire or renew lasts; None: held until released."""
        ...

    def try_acquire(self) -> int | None:
        """Take the lock if it is free (or already ours): its epoch, or None if held by
        another. Raises StoreError when the lock's backend cannot be reached."""
        ...

    def renew(self) -> bool:
        """Extend the lock: False if it is no longer ours. Raises StoreError when the
        backend cannot be reached (the holder keeps acting until its deadline)."""
        ...

    def release(self) -> None:
        """Give the lock up now, so a standby need not wait for it to expire."""
        ...

    def close(self) -> None:
        """Free the resources (file descriptor, connections) without releasing on purpose."""
        ...


# --- SQLite: a file lock -----------------------------------------------------------------


class FileLeaderLock:
    """An exclusive, non-blocking ``flock``: held for the life of the process that took it.

    The kernel releases it when the process dies, however it dies (SIGKILL included), so a
    standby takes over without any lease to expire.
    """

    lease: float | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    def try_acquire(self) -> int | None:
        """0 once held (a file lock keeps no count of its holders), None if another holds it."""
        if self._fd is not None:
            return 0
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the leader lock {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return 0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def renew(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self.release()


# --- PostgreSQL: a lease row -------------------------------------------------------------

_CREATE = """
CREATE TABLE IF NOT EXISTS leader_lease (
    name VARCHAR(64) PRIMARY KEY,
    holder VARCHAR(255) NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
)
"""

# One statement, so two standbys racing for an expired lease cannot both win: the loser
# waits on the row lock, then sees the winner's fresh expiry and updates nothing. The epoch
# grows with every acquisition, also when a holder takes back a lease it had given up.
_ACQUIRE = """
INSERT INTO leader_lease AS l (name, holder, epoch, acquired_at, renewed_at, expires_at)
VALUES (:name, :holder, 1, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => :lease))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder, epoch = l.epoch + 1, acquired_at = EXCLUDED.acquired_at,
    renewed_at = EXCLUDED.renewed_at, expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= clock_timestamp() OR l.holder = EXCLUDED.holder
RETURNING epoch
"""

# Only the same holder in the same epoch, and only while the lease is still valid: once it
# has lapsed, taking it back is an acquisition (a new epoch), never a renewal.
_RENEW = """
UPDATE leader_lease
SET renewed_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => :lease)
WHERE name = :name AND holder = :holder AND epoch = :epoch AND expires_at > clock_timestamp()
RETURNING epoch
"""

_RELEASE = """
UPDATE leader_lease SET expires_at = clock_timestamp()
WHERE name = :name AND holder = :holder AND epoch = :epoch
"""


def holder_id() -> str:
    """This process, unique among controllers: host, pid, and a random part (pids repeat)."""
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{secrets.token_hex(4)}"


class PostgresLease:
    """The ``leader_lease`` row in the store's PostgreSQL database.

    Its own engine with a single connection: renewals never wait behind ticks for a pooled
    connection, and a connection that stops answering fails after ``io_timeout`` (TCP user
    timeout) instead of hanging the renewing thread for the kernel's default of minutes.
    """

    def __init__(
        self,
        url: str,
        *,
        lease: float,
        io_timeout: float,
        holder: str | None = None,
        name: str = LEASE_NAME,
    ) -> None:
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            raise StoreError("invalid database URL for the leader lease") from None
        self._where = parsed.render_as_string(hide_password=True)
        self._lease = lease
        self.holder = holder or holder_id()
        self.name = name
        self._epoch: int | None = None
        self._table_ready = False
        self._engine: Engine = create_engine(
            parsed,
            pool_size=1,
            max_overflow=0,
            pool_timeout=max(1.0, io_timeout),
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(2, math.ceil(io_timeout)),
                "tcp_user_timeout": max(1000, int(io_timeout * 1000)),
                "keepalives": 1,
                "keepalives_idle": max(1, int(io_timeout)),
                "keepalives_interval": 1,
                "keepalives_count": 3,
            },
        )

    @property
    def where(self) -> str:
        return f"{self._where} (table leader_lease)"

    @property
    def lease(self) -> float:
        return self._lease

    @property
    def epoch(self) -> int | None:
        return self._epoch

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[Any]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            words = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
            raise StoreError(f"leader lease on {self._where}: cannot {what}: {words}") from exc

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        with self._transaction("create the lease table") as conn:
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalogue.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TABLE_LOCK})
            conn.execute(text(_CREATE))
        self._table_ready = True

    def try_acquire(self) -> int | None:
        self._ensure_table()
        params = {"name": self.name, "holder": self.holder, "lease": self._lease}
        with self._transaction("acquire the lease") as conn:
            epoch = conn.execute(text(_ACQUIRE), params).scalar()
        self._epoch = None if epoch is None else int(epoch)
        return self._epoch

    def renew(self) -> bool:
        if self._epoch is None:
            return False
        params = {
            "name": self.name,
            "holder": self.holder,
            "epoch": self._epoch,
            "lease": self._lease,
        }
        with self._transaction("renew the lease") as conn:
            renewed = conn.execute(text(_RENEW), params).scalar()
        if renewed is None:
            self._epoch = None
            return False
        return True

    def release(self) -> None:
        if self._epoch is None:
            return
        params = {"name": self.name, "holder": self.holder, "epoch": self._epoch}
        self._epoch = None
        with self._transaction("release the lease") as conn:
            conn.execute(text(_RELEASE), params)

    def close(self) -> None:
        self._engine.dispose()


def leader_lock_for(settings: Settings) -> LeaderLock:
    """The lease on a PostgreSQL store, the file lock in the state directory otherwise."""
    url = settings.effective_database_url
    if url.startswith("postgresql"):
        return PostgresLease(
            url, lease=settings.leader_lease, io_timeout=settings.leader_renew_interval
        )
    return FileLeaderLock(settings.state_dir / "canary.lock")


# --- keeping leadership ------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One stretch of leadership: its epoch and the monotonic instant it must end by."""

    epoch: int
    until: float


def acting_until(sent_at: float, lease: float | None) -> float:
    """The last monotonic instant a holder may act, given when its last successful acquire
    or renewal was *sent* (not answered: the database may have run it any time after)."""
    return math.inf if lease is None else sent_at + (1.0 - MARGIN) * lease


class Leadership:
    """Acquires the lock, keeps it, and says when this controller may act.

    A keeper thread tries to acquire while standing by and renews while leading; a watchdog
    thread ends a term at its deadline even if the keeper is stuck in a network call.
    ``on_elected(epoch)`` and ``on_lost(epoch, reason)`` run one at a time, in order, under
    one lock, so a loss is never handled after the election that followed it.
    """

    def __init__(
        self,
        lock: LeaderLock,
        *,
        on_elected: Callable[[int], None],
        on_lost: Callable[[int, str], None],
        renew_interval: float,
        retry_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = lock
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._renew_interval = renew_interval
        self._retry_interval = retry_interval
        self._clock = clock
        self._term: Term | None = None
        self._turn = threading.RLock()
        self._changed = threading.Condition(self._turn)
        self._campaigning = True
        self._stop = threading.Event()
        self._unreachable = False
        self._threads: list[threading.Thread] = []

    # --- what the daemon asks ---------------------------------------------------------

    def acting(self) -> bool:
        """True while this controller leads and its term has not run out. Lock-free: the
        tick guard asks it before every tick."""
        term = self._term
        return term is not None and self._clock() < term.until

    @property
    def term(self) -> Term | None:
        return self._term

    @contextlib.contextmanager
    def steady(self) -> Iterator[bool]:
        """Whether this controller acts, held still: no election or loss is handled until
        the block ends, so a job added inside cannot outlive a loss that came meanwhile."""
        with self._turn:
            yield self.acting()

    def start(self) -> bool:
        """Try once now (so the caller can say at once whether it leads), then keep at it in
        the background. Returns whether this controller leads."""
        self._attempt()
        for target, name in ((self._keep, "leader-keeper"), (self._watch, "leader-watchdog")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.acting()

    def retire(self) -> None:
        """Seek no new term (shutting down); the current one is still renewed until stop()."""
        with self._turn:
            self._campaigning = False

    def stop(self, *, release: bool, timeout: float = 5.0) -> None:
        """Stop the threads; with ``release``, give the lock up for a standby at once
        (only when nothing of this controller runs any more), else let it lapse."""
        self.retire()
        self._stop.set()
        with self._turn:
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)
        with self._turn:
            term, self._term = self._term, None
        try:
            if release and term is not None:
                self.lock.release()
                log.info("leader.released", where=self.lock.where, epoch=term.epoch)
            elif term is not None and self.lock.lease is not None:
                log.warning("leader.left_to_expire", where=self.lock.where, epoch=term.epoch)
        except CanaryError as exc:
            log.warning("leader.release_failed", where=self.lock.where, error=str(exc))
        finally:
            self.lock.close()

    # --- threads ----------------------------------------------------------------------

    def _keep(self) -> None:
        while not self._stop.is_set():
            term = self._term
            if term is None:
                if self._campaigning:
                    self._attempt()
                self._stop.wait(self._retry_interval)
            elif self.lock.lease is None:
                self._stop.wait(self._retry_interval)  # nothing to renew: held until exit
            else:
                self._stop.wait(self._renew_interval)
                if not self._stop.is_set():
                    self._renew(term)

    def _watch(self) -> None:
        with self._turn:
            while not self._stop.is_set():
                term = self._term
                if term is None or term.until == math.inf:
                    self._changed.wait(timeout=1.0)
                    continue
                remaining = term.until - self._clock()
                if remaining > 0:
                    self._changed.wait(timeout=remaining)
                    continue
                self._lose(term, "lease not renewed in time: stopped before it can expire")

    def _attempt(self) -> None:
        sent = self._clock()
        try:
            epoch = self.lock.try_acquire()
        except CanaryError as exc:
            if not self._unreachable:
                log.warning("leader.unreachable", where=self.lock.where, error=str(exc))
            self._unreachable = True
            return
        if self._unreachable:
            log.info("leader.reachable", where=self.lock.where)
            self._unreachable = False
        if epoch is None:
            return
        with self._turn:
            if self._term is not None:
                return
            if not self._campaigning:  # shutting down meanwhile: hand it straight back
                with contextlib.suppress(CanaryError):
                    self.lock.release()
                return
            term = Term(epoch, acting_until(sent, self.lock.lease))
            if self._clock() >= term.until:
                return  # the answer came too late to act on; the next attempt renews it
            self._term = term
            self._changed.notify_all()
            self._on_elected(epoch)

    def _renew(self, term: Term) -> None:
        sent = self._clock()
        try:
            renewed = self.lock.renew()
        except CanaryError as exc:
            log.warning(
                "leader.renew_failed",
                where=self.lock.where,
                epoch=term.epoch,
                seconds_left=round(term.until - self._clock(), 3),
                error=str(exc),
            )
            return
        with self._turn:
            if self._term is not term:
                return  # the watchdog ended this term meanwhile; this answer is stale
            if not renewed:
                self._lose(term, "the lease was taken over or has expired")
                return
            if self._clock() >= term.until:
                # Renewed, but only after this term ran out (the guard already refused
                # ticks): end it properly; the keeper starts a new term with a new epoch.
                self._lose(term, "lease renewed too late: stopped before it could expire")
                return
            self._term = Term(term.epoch, max(term.until, acting_until(sent, self.lock.lease)))
            self._changed.notify_all()
        log.debug("leader.renewed", epoch=term.epoch)

    def _lose(self, term: Term, reason: str) -> None:
        """End ``term`` (caller holds the turn lock): acting() is False before on_lost runs."""
        self._term = None
        self._changed.notify_all()
        self._on_lost(term.epoch, reason)
