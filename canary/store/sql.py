"""The store on SQLAlchemy Core: a SQLite file by default, PostgreSQL for several controllers.

SQLite is the default because a single controller then needs no database server: the file
lives in the state directory, in WAL mode (readers such as the status API never block the
writer) with a busy timeout (a second writer waits instead of failing at once). Write
transactions start with ``BEGIN IMMEDIATE``, so the write lock is taken before anything is
read: a deferred transaction that reads and then upgrades to a write can fail with "database
is locked" however long the busy timeout is.

PostgreSQL (``postgresql+psycopg://...``) uses the same tables and statements. Its default
READ COMMITTED isolation is enough: the revision check is one conditional ``UPDATE`` (the row
lock makes the loser see zero rows), and one-active-rollout-per-model is a unique column.

Every SQLAlchemy exception stops here and becomes a StoreError that says which store (the
URL with its password hidden), what was being done and the driver's own reason, with a hint
for the failures people actually hit (a state directory that does not exist or is not
writable, a full disk, a lock held too long).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from canary.core import names
from canary.core.lifecycle import Phase, Rollout, Transition
from canary.errors import StoreError
from canary.log import get_logger
from canary.store.base import (
    ActiveRolloutError,
    ConflictError,
    DecisionRecord,
    DeliveryStatus,
    DuplicateTickError,
    Measurement,
    MeasurementOutcome,
    OutboxEntry,
    OutboxItem,
    StaleWriteError,
    StoredRollout,
)

log = get_logger(__name__)

SCHEMA_VERSION = 2
"""Bumped with every change to the tables; a store written by a newer canary is refused.
2: the ``cursors`` table (a store of version 1 is upgraded by creating it)."""

# Channel names are stored in clear: a letter kind and, optionally, the name of the
# environment variable that holds the secret. A URL cannot match (no slash), so a webhook URL
# can never end up in the database by mistake.
CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}(:[A-Za-z0-9_.\-]{1,128})?$")
DEDUPE_KEY = re.compile(r"^[A-Za-z0-9_.:\-/]{1,255}$")
ACTION = re.compile(r"^[a-z][a-z_]{0,31}$")

_MAX_ERROR_CHARS = 2000
_SCHEMA_LOCK = 0x63616E617279  # "canary": the advisory lock held while creating the schema

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("version", String(16), nullable=False),
    Column("champion_version", String(16)),
    Column("phase", String(32), nullable=False),
    Column("step", Integer, nullable=False),
    Column("canary_weight", Double, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("step_started_at", Double),
    Column("analysis_started_at", Double),
    Column("canary_address", String(255)),
    Column("rollback_to", String(32)),
    Column("reason", Text, nullable=False),
    Column("policy_digest", String(128), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    # The model while the rollout is active, NULL once terminal. Unique: the database itself
    # refuses a second active rollout of a model (NULLs never collide).
    Column("active_model", String(128)),
    PrimaryKeyConstraint("id", name="pk_rollouts"),
    UniqueConstraint("active_model", name="uq_rollouts_active_model"),
    Index("ix_rollouts_model", "model"),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", String(128), ForeignKey("rollouts.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("from_phase", String(32), nullable=False),
    Column("to_phase", String(32), nullable=False),
    Column("at", Double, nullable=False),
    Column("reason", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("canary_weight", Double, nullable=False),
    Column("event", String(32)),
    Column("detail", JSON, nullable=False),
    UniqueConstraint("rollout_id", "revision", name="uq_transitions_revision"),
)

measurements = Table(
    "measurements",
    metadata,
    Column("rollout_id", String(128), ForeignKey("rollouts.id"), nullable=False),
    Column("tick", Integer, nullable=False),
    Column("t", Double, nullable=False),
    Column("at", Double, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("snapshot", JSON(none_as_null=True)),
    Column("analysis", JSON(none_as_null=True)),
    Column("error", Text),
    PrimaryKeyConstraint("rollout_id", "tick", name="pk_measurements"),
)

# The metrics source's cursor after a rollout's latest tick (the raw counters it folds resets
# against): only the latest is ever read, so it is one row per rollout, replaced every tick,
# not a column of every measurement (it is the largest part of a tick's record).
cursors = Table(
    "cursors",
    metadata,
    Column("rollout_id", String(128), ForeignKey("rollouts.id"), nullable=False),
    Column("tick", Integer, nullable=False),
    Column("state", JSON, nullable=False),
    PrimaryKeyConstraint("rollout_id", name="pk_cursors"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("rollout_id", String(128), ForeignKey("rollouts.id"), nullable=False),
    Column("tick", Integer, nullable=False),
    Column("at", Double, nullable=False),
    Column("action", String(32), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("detail", JSON, nullable=False),
    PrimaryKeyConstraint("rollout_id", "tick", name="pk_decisions"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(255), nullable=False),
    Column("channel", String(160), nullable=False),
    Column("rollout_id", String(128), nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("created_at", Double, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("sent_at", Double),
    UniqueConstraint("dedupe_key", "channel", name="uq_notifications_dedupe"),
    Index("ix_notifications_due", "status", "next_attempt_at"),
    Index("ix_notifications_rollout", "rollout_id"),
)


def sqlite_url(state_dir: str | Path) -> str:
    """The default store: ``canary.db`` in the state directory."""
    return f"sqlite:///{Path(state_dir) / 'canary.db'}"


def _dumps(value: Any) -> str:
    """JSON for every JSON column: NaN and infinities are refused (PostgreSQL rejects them
    and they would not survive a round trip), instead of being written as invalid JSON."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


_HINTS = (
    ("unable to open database file", "does the state directory exist, and may this user write it?"),
    ("readonly database", "the state directory or the database file is read-only for this user"),
    ("disk is full", "free space on the state directory's file system"),
    ("database is locked", "another process held the write lock longer than the busy timeout"),
    ("connection refused", "is the database server running and listening there?"),
)


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own words (not SQLAlchemy's statement dump), on one line, with a hint."""
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        cause = exc.orig
    elif exc.__cause__ is not None:
        cause = exc.__cause__
    words = " ".join(str(cause).split()) or type(cause).__name__
    if len(words) > 500:
        words = words[:497] + "..."
    lowered = words.lower()
    for needle, hint in _HINTS:
        if needle in lowered:
            return f"{words} ({hint})"
    return words


def _conflict(exc: IntegrityError) -> ConflictError | None:
    """Which rule a unique-key violation broke, from the constraint name (PostgreSQL) or the
    columns SQLite names; these arise when a concurrent writer wins a race past the checks."""
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or ""
    message = str(exc.orig)
    if constraint == "uq_rollouts_active_model" or "rollouts.active_model" in message:
        return ActiveRolloutError("the model already has an active rollout (concurrent writer)")
    if constraint in ("pk_rollouts", "uq_transitions_revision") or re.search(
        r"rollouts\.id\b|transitions\.rollout_id", message
    ):
        return StaleWriteError("the rollout was written concurrently by another writer")
    if constraint in ("pk_measurements", "pk_decisions") or re.search(
        r"(measurements|decisions)\.rollout_id", message
    ):
        return DuplicateTickError("this tick is already recorded (concurrent writer)")
    return None


def _display_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable database URL>"


class SqlStore:
    """The :class:`~canary.store.base.Store` on SQLAlchemy. Thread-safe: each call takes its
    own pooled connection, so the daemon's tick and the notification worker can share it."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.display_url = _display_url(url)
        self._clock = clock
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"invalid database URL {self.display_url}: {_reason(exc)}") from exc
        except ValueError:  # e.g. a port that is not a number; its text may hold the password
            raise StoreError(f"invalid database URL {self.display_url}") from None
        self._dialect = parsed.get_backend_name()
        if self._dialect not in ("sqlite", "postgresql"):
            raise StoreError(
                f"store {self.display_url}: unsupported database {self._dialect!r} "
                "(use sqlite:///path or postgresql+psycopg://...)"
            )
        connect_args: dict[str, Any] = {}
        if self._dialect == "sqlite":
            _check_sqlite_path(parsed.database, self.display_url)
        else:
            connect_args["connect_timeout"] = max(1, round(connect_timeout))
        with self._translate("open the store"):
            try:
                self._engine: Engine = create_engine(
                    parsed,
                    json_serializer=_dumps,
                    pool_pre_ping=self._dialect == "postgresql",
                    connect_args=connect_args,
                )
            except ImportError as exc:
                raise StoreError(
                    f"store {self.display_url}: its database driver is not installed ({exc}); "
                    "PostgreSQL needs psycopg: pip install 'psycopg[binary]'"
                ) from exc
            if self._dialect == "sqlite":
                _configure_sqlite(self._engine, busy_timeout)
        try:
            self._open_retrying()
        except BaseException:
            self._engine.dispose()
            raise
        log.info("store.opened", url=self.display_url, schema_version=SCHEMA_VERSION)

    def _open_retrying(self, attempts: int = 4) -> None:
        """``_open``, again after a pause if SQLite says the file is locked.

        Controllers starting together on a new SQLite file all switch it to WAL mode and
        create the tables; SQLite sometimes answers "locked" at once instead of waiting for
        the busy timeout while the journal mode changes. A short retry rides that out.
        """
        for attempt in range(attempts):
            try:
                self._open()
                return
            except StoreError as exc:
                if self._dialect != "sqlite" or "locked" not in str(exc):
                    raise
                if attempt == attempts - 1:
                    raise
                log.info("store.open_retry", url=self.display_url, attempt=attempt + 1)
                time.sleep(0.25 * (attempt + 1))

    def _open(self) -> None:
        """Create missing tables and check (or record) the schema version in one write
        transaction, so an unwritable store fails here, at start, and concurrent starts wait
        for each other instead of racing to create the same tables."""
        with self._write("create the tables") as conn:
            if self._dialect == "postgresql":
                # Controllers starting together would race to create the same tables; the
                # lock lasts until this transaction ends. (SQLite: BEGIN IMMEDIATE does it.)
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            metadata.create_all(conn)
            found = list(conn.execute(select(schema_version.c.version)).scalars())
            if not found:
                conn.execute(insert(schema_version).values(version=SCHEMA_VERSION))
            elif max(found) < SCHEMA_VERSION:  # create_all has added the new tables
                conn.execute(update(schema_version).values(version=SCHEMA_VERSION))
                log.info("store.upgraded", schema_from=max(found), schema_to=SCHEMA_VERSION)
            elif max(found) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.display_url}: schema version {max(found)} was written by a "
                    f"newer canary; this one knows version {SCHEMA_VERSION}"
                )

    # --- plumbing ---------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and diagnostics; the daemon uses the methods)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except IntegrityError as exc:
            conflict = _conflict(exc)
            if conflict is None:
                raise StoreError(
                    f"store {self.display_url}: cannot {what}: {_reason(exc)}"
                ) from exc
            raise conflict from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.display_url}: cannot {what}: {_reason(exc)}") from exc
        except (ValueError, TypeError) as exc:
            # Raised by the JSON serializer, wrapped or not depending on the driver.
            raise StoreError(
                f"store {self.display_url}: cannot {what}: a value is not JSON: {exc}"
            ) from exc

    @contextmanager
    def _write(self, what: str) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success and
        rolled back on any exception, including our own StaleWriteError and friends."""
        with self._translate(what), self._engine.connect() as conn:
            conn.execution_options(canary_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        with self._translate(what), self._engine.connect() as conn:
            yield conn

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    # --- rollouts -----------------------------------------------------------------------

    def save(
        self,
        rollout: Rollout,
        *,
        expected_revision: int,
        transition: Transition | None = None,
        notifications: Sequence[OutboxEntry] = (),
        now: float | None = None,
    ) -> int:
        _check_rollout(rollout)
        if expected_revision < 0:
            raise ValueError(f"expected_revision must be >= 0, got {expected_revision}")
        if transition is not None and transition.rollout_id != rollout.id:
            raise ValueError(
                f"transition of rollout {transition.rollout_id} saved with rollout {rollout.id}"
            )
        for entry in notifications:
            _check_entry(entry)
        values = _rollout_values(rollout)
        revision = expected_revision + 1
        at = self._now(now)
        with self._write(f"save rollout {rollout.id}") as conn:
            if expected_revision == 0:
                self._insert_rollout(conn, rollout, values)
            else:
                result = conn.execute(
                    update(rollouts)
                    .where(rollouts.c.id == rollout.id, rollouts.c.revision == expected_revision)
                    .values(**values, revision=revision)
                )
                if result.rowcount != 1:
                    found = conn.execute(
                        select(rollouts.c.revision).where(rollouts.c.id == rollout.id)
                    ).scalar()
                    raise StaleWriteError(
                        f"rollout {rollout.id}: expected revision {expected_revision}, "
                        + ("it does not exist" if found is None else f"found {found}")
                    )
            if transition is not None:
                conn.execute(insert(transitions).values(_transition_values(transition, revision)))
            for entry in notifications:
                conn.execute(self._insert_entry(entry, at))
        return revision

    def _insert_rollout(self, conn: Connection, rollout: Rollout, values: dict[str, Any]) -> None:
        """Insert a new rollout, with readable errors for the two ways it can conflict (the
        unique keys still decide if a concurrent writer slips between check and insert)."""
        found = conn.execute(
            select(rollouts.c.revision).where(rollouts.c.id == rollout.id)
        ).scalar()
        if found is not None:
            raise StaleWriteError(f"rollout {rollout.id} already exists (revision {found})")
        if rollout.phase.active:
            other = conn.execute(
                select(rollouts.c.id).where(rollouts.c.active_model == rollout.model)
            ).scalar()
            if other is not None:
                raise ActiveRolloutError(
                    f"model {rollout.model} already has an active rollout: {other}"
                )
        conn.execute(insert(rollouts).values(**values, revision=1))

    def get(self, rollout_id: str) -> StoredRollout | None:
        with self._read(f"read rollout {rollout_id}") as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
        return None if row is None else _stored_rollout(row)

    def rollouts(
        self, *, active: bool | None = None, model: str | None = None
    ) -> list[StoredRollout]:
        query = select(rollouts).order_by(rollouts.c.created_at, rollouts.c.id)
        if active is True:
            query = query.where(rollouts.c.active_model.is_not(None))
        elif active is False:
            query = query.where(rollouts.c.active_model.is_(None))
        if model is not None:
            query = query.where(rollouts.c.model == model)
        with self._read("list rollouts") as conn:
            return [_stored_rollout(row) for row in conn.execute(query)]

    def active_for(self, model: str) -> StoredRollout | None:
        with self._read(f"read the active rollout of {model}") as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.active_model == model)).first()
        return None if row is None else _stored_rollout(row)

    def transitions(self, rollout_id: str) -> list[Transition]:
        query = (
            select(transitions)
            .where(transitions.c.rollout_id == rollout_id)
            .order_by(transitions.c.revision, transitions.c.id)
        )
        with self._read(f"read the transitions of {rollout_id}") as conn:
            return [_transition(row) for row in conn.execute(query)]

    # --- measurements and decisions ------------------------------------------------------

    def add_measurement(
        self,
        measurement: Measurement,
        decision: DecisionRecord | None = None,
        *,
        cursor: dict[str, Any] | None = None,
    ) -> None:
        names.check(names.LABEL_VALUE, measurement.rollout_id, "rollout id")
        if measurement.tick < 0:
            raise ValueError(f"tick must be >= 0, got {measurement.tick}")
        if decision is not None:
            if (decision.rollout_id, decision.tick) != (measurement.rollout_id, measurement.tick):
                raise ValueError("a decision is stored with the measurement of its own tick")
            names.check(ACTION, decision.action, "decision action")
        what = f"record tick {measurement.tick} of rollout {measurement.rollout_id}"
        with self._write(what) as conn:
            found = conn.execute(
                select(measurements.c.tick).where(
                    measurements.c.rollout_id == measurement.rollout_id,
                    measurements.c.tick == measurement.tick,
                )
            ).scalar()
            if found is not None:
                raise DuplicateTickError(f"{what}: that tick is already recorded")
            conn.execute(
                insert(measurements).values(
                    rollout_id=measurement.rollout_id,
                    tick=measurement.tick,
                    t=measurement.t,
                    at=measurement.at,
                    outcome=MeasurementOutcome(measurement.outcome).value,
                    snapshot=measurement.snapshot,
                    analysis=measurement.analysis,
                    error=measurement.error,
                )
            )
            if cursor is not None:
                conn.execute(delete(cursors).where(cursors.c.rollout_id == measurement.rollout_id))
                conn.execute(
                    insert(cursors).values(
                        rollout_id=measurement.rollout_id, tick=measurement.tick, state=cursor
                    )
                )
            if decision is not None:
                conn.execute(
                    insert(decisions).values(
                        rollout_id=decision.rollout_id,
                        tick=decision.tick,
                        at=decision.at,
                        action=decision.action,
                        reasons=list(decision.reasons),
                        detail=decision.detail,
                    )
                )

    def measurements(self, rollout_id: str) -> list[Measurement]:
        query = (
            select(measurements)
            .where(measurements.c.rollout_id == rollout_id)
            .order_by(measurements.c.tick)
        )
        with self._read(f"read the measurements of {rollout_id}") as conn:
            return [
                Measurement(
                    rollout_id=row.rollout_id,
                    tick=row.tick,
                    t=row._mapping["t"],
                    outcome=MeasurementOutcome(row.outcome),
                    snapshot=row.snapshot,
                    analysis=row.analysis,
                    error=row.error,
                    at=row.at,
                )
                for row in conn.execute(query)
            ]

    def cursor(self, rollout_id: str) -> dict[str, Any] | None:
        query = select(cursors.c.state).where(cursors.c.rollout_id == rollout_id)
        with self._read(f"read the cursor of {rollout_id}") as conn:
            state = conn.execute(query).scalar()
        return None if state is None else dict(state)

    def decisions(self, rollout_id: str) -> list[DecisionRecord]:
        query = (
            select(decisions).where(decisions.c.rollout_id == rollout_id).order_by(decisions.c.tick)
        )
        with self._read(f"read the decisions of {rollout_id}") as conn:
            return [
                DecisionRecord(
                    rollout_id=row.rollout_id,
                    tick=row.tick,
                    at=row.at,
                    action=row.action,
                    reasons=tuple(row.reasons),
                    detail=dict(row.detail),
                )
                for row in conn.execute(query)
            ]

    # --- notification outbox --------------------------------------------------------------

    def _insert_entry(self, entry: OutboxEntry, at: float) -> Insert:
        """An insert that does nothing when the dedupe key is already known on the channel."""
        values = {
            "dedupe_key": entry.dedupe_key,
            "channel": entry.channel,
            "rollout_id": entry.rollout_id,
            "event": entry.event,
            "payload": entry.payload,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "created_at": at,
            "next_attempt_at": at,
        }
        keys = ["dedupe_key", "channel"]
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return (
                pg_insert(notifications).values(values).on_conflict_do_nothing(index_elements=keys)
            )
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return (
            sqlite_insert(notifications).values(values).on_conflict_do_nothing(index_elements=keys)
        )

    def enqueue(self, entries: Sequence[OutboxEntry], *, now: float | None = None) -> int:
        for entry in entries:
            _check_entry(entry)
        at = self._now(now)
        added = 0
        with self._write("record notifications") as conn:
            for entry in entries:
                # RETURNING, not rowcount: drivers disagree on rowcount after ON CONFLICT.
                inserted = conn.execute(self._insert_entry(entry, at).returning(notifications.c.id))
                added += len(inserted.all())
        return added

    def claim_due(self, *, now: float, lease: float, limit: int) -> list[OutboxItem]:
        claimed: list[OutboxItem] = []
        with self._write("claim notifications") as conn:
            rows = conn.execute(
                select(notifications)
                .where(
                    notifications.c.status == DeliveryStatus.PENDING.value,
                    notifications.c.next_attempt_at <= now,
                )
                .order_by(notifications.c.id)
                .limit(limit)
            ).all()
            for row in rows:
                # Conditional on what was read: with several workers, one claim wins.
                result = conn.execute(
                    update(notifications)
                    .where(
                        notifications.c.id == row.id,
                        notifications.c.status == DeliveryStatus.PENDING.value,
                        notifications.c.next_attempt_at == row.next_attempt_at,
                    )
                    .values(attempts=row.attempts + 1, next_attempt_at=now + lease)
                )
                if result.rowcount == 1:
                    item = _outbox_item(row)
                    claimed.append(
                        OutboxItem(
                            id=item.id,
                            entry=item.entry,
                            status=item.status,
                            attempts=item.attempts + 1,
                            last_error=item.last_error,
                            created_at=item.created_at,
                            next_attempt_at=now + lease,
                            sent_at=None,
                        )
                    )
        return claimed

    def mark_sent(self, item_id: int, *, at: float) -> None:
        with self._write(f"mark notification {item_id} sent") as conn:
            conn.execute(
                update(notifications)
                .where(notifications.c.id == item_id)
                .values(status=DeliveryStatus.SENT.value, sent_at=at)
            )

    def mark_failed(
        self, item_id: int, *, error: str, at: float, retry_at: float | None = None
    ) -> None:
        status = DeliveryStatus.PENDING if retry_at is not None else DeliveryStatus.FAILED
        with self._write(f"record a failed delivery of notification {item_id}") as conn:
            conn.execute(
                update(notifications)
                .where(
                    notifications.c.id == item_id,
                    notifications.c.status == DeliveryStatus.PENDING.value,
                )
                .values(
                    status=status.value,
                    last_error=error[:_MAX_ERROR_CHARS],
                    next_attempt_at=retry_at if retry_at is not None else at,
                )
            )

    def notifications(
        self, *, rollout_id: str | None = None, status: DeliveryStatus | None = None
    ) -> list[OutboxItem]:
        query = select(notifications).order_by(notifications.c.id)
        if rollout_id is not None:
            query = query.where(notifications.c.rollout_id == rollout_id)
        if status is not None:
            query = query.where(notifications.c.status == DeliveryStatus(status).value)
        with self._read("read notifications") as conn:
            return [_outbox_item(row) for row in conn.execute(query)]


# --- SQLite setup ------------------------------------------------------------------------


def _check_sqlite_path(database: str | None, display: str) -> None:
    """Refuse in-memory databases (each pooled connection would get its own, empty one) and
    say plainly when the state directory is missing, before SQLite's terser message."""
    if not database or database == ":memory:" or database.startswith("file:"):
        raise StoreError(
            f"store {display}: the SQLite store must be a file path (sqlite:///DIR/canary.db)"
        )
    parent = Path(database).parent
    if not parent.is_dir():
        raise StoreError(f"store {display}: state directory {parent} does not exist")


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    """WAL, busy timeout and foreign keys on every connection; our own BEGIN statements."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                log.warning("store.wal_unavailable", journal_mode=mode[0] if mode else None)
            # In WAL mode NORMAL is safe against corruption; it only risks the last commits on
            # power loss, which the next tick redoes.
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("canary_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# --- rows <-> records --------------------------------------------------------------------


def _check_rollout(rollout: Rollout) -> None:
    names.check(names.LABEL_VALUE, rollout.id, "rollout id")
    names.check(names.MODEL_NAME, rollout.model, "model name")
    names.check(names.VERSION, rollout.version, "model version")
    if rollout.champion_version is not None:
        names.check(names.VERSION, rollout.champion_version, "champion version")


def _check_entry(entry: OutboxEntry) -> None:
    names.check(CHANNEL, entry.channel, "notification channel")
    names.check(DEDUPE_KEY, entry.dedupe_key, "notification dedupe key")
    names.check(names.LABEL_VALUE, entry.rollout_id, "rollout id")


def _rollout_values(rollout: Rollout) -> dict[str, Any]:
    return {
        "id": rollout.id,
        "model": rollout.model,
        "version": rollout.version,
        "champion_version": rollout.champion_version,
        "phase": Phase(rollout.phase).value,
        "step": rollout.step,
        "canary_weight": float(rollout.canary_weight),
        "created_at": rollout.created_at,
        "updated_at": rollout.updated_at,
        "step_started_at": rollout.step_started_at,
        "analysis_started_at": rollout.analysis_started_at,
        "canary_address": rollout.canary_address,
        "rollback_to": None if rollout.rollback_to is None else Phase(rollout.rollback_to).value,
        "reason": rollout.reason,
        "policy_digest": rollout.policy_digest,
        "detail": rollout.detail,
        "active_model": rollout.model if Phase(rollout.phase).active else None,
    }


def _stored_rollout(row: Row[Any]) -> StoredRollout:
    rollout = Rollout(
        id=row.id,
        model=row.model,
        version=row.version,
        champion_version=row.champion_version,
        phase=Phase(row.phase),
        step=row.step,
        canary_weight=row.canary_weight,
        created_at=row.created_at,
        updated_at=row.updated_at,
        step_started_at=row.step_started_at,
        analysis_started_at=row.analysis_started_at,
        canary_address=row.canary_address,
        rollback_to=None if row.rollback_to is None else Phase(row.rollback_to),
        reason=row.reason,
        policy_digest=row.policy_digest,
        detail=dict(row.detail),
    )
    return StoredRollout(rollout=rollout, revision=row.revision)


def _transition_values(transition: Transition, revision: int) -> dict[str, Any]:
    return {
        "rollout_id": transition.rollout_id,
        "revision": revision,
        "from_phase": Phase(transition.from_phase).value,
        "to_phase": Phase(transition.to_phase).value,
        "at": transition.at,
        "reason": transition.reason,
        "step": transition.step,
        "canary_weight": float(transition.canary_weight),
        "event": transition.event,
        "detail": transition.detail,
    }


def _transition(row: Row[Any]) -> Transition:
    return Transition(
        rollout_id=row.rollout_id,
        from_phase=Phase(row.from_phase),
        to_phase=Phase(row.to_phase),
        at=row.at,
        reason=row.reason,
        step=row.step,
        canary_weight=row.canary_weight,
        event=row.event,
        detail=dict(row.detail),
    )


def _outbox_item(row: Row[Any]) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        entry=OutboxEntry(
            dedupe_key=row.dedupe_key,
            channel=row.channel,
            rollout_id=row.rollout_id,
            event=row.event,
            payload=dict(row.payload),
        ),
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
    )
