"""How driver failures are put into words, without any database."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from canary.store.base import ActiveRolloutError, DuplicateTickError, StaleWriteError
from canary.store.sql import CHANNEL, _conflict, _display_url, _reason, sqlite_url


class FakeDriverError(Exception):
    """A driver exception that names the constraint, as psycopg's ``diag`` does."""

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.diag = SimpleNamespace(constraint_name=constraint)


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("unable to open database file", "does the state directory exist"),
        ("attempt to write a readonly database", "read-only for this user"),
        ("database or disk is full", "free space"),
        ("database is locked", "busy timeout"),
        ("connection failed: Connection refused", "is the database server running"),
    ],
)
def test_the_failures_people_hit_come_with_a_hint(message: str, hint: str) -> None:
    exc = OperationalError("INSERT INTO rollouts ...", {}, sqlite3.OperationalError(message))
    text = _reason(exc)
    assert text.startswith(message)
    assert hint in text
    assert "INSERT" not in text  # the driver's words, not SQLAlchemy's statement dump


def test_a_long_multi_line_reason_becomes_one_short_line() -> None:
    exc = OperationalError("x", {}, sqlite3.OperationalError("first\nsecond " + "y" * 900))
    text = _reason(exc)
    assert "\n" not in text
    assert len(text) == 500
    assert text.startswith("first second")


@pytest.mark.parametrize(
    ("driver_error", "expected"),
    [
        (FakeDriverError("duplicate key", "uq_rollouts_active_model"), ActiveRolloutError),
        (FakeDriverError("duplicate key", "pk_rollouts"), StaleWriteError),
        (FakeDriverError("duplicate key", "uq_transitions_revision"), StaleWriteError),
        (FakeDriverError("duplicate key", "pk_measurements"), DuplicateTickError),
        (
            sqlite3.IntegrityError("UNIQUE constraint failed: rollouts.active_model"),
            ActiveRolloutError,
        ),
        (sqlite3.IntegrityError("UNIQUE constraint failed: rollouts.id"), StaleWriteError),
        (
            sqlite3.IntegrityError(
                "UNIQUE constraint failed: measurements.rollout_id, measurements.tick"
            ),
            DuplicateTickError,
        ),
    ],
)
def test_a_lost_race_is_named_by_the_rule_it_broke(driver_error: Exception, expected: type) -> None:
    conflict = _conflict(IntegrityError("INSERT ...", {}, driver_error))
    assert type(conflict) is expected


def test_other_integrity_errors_are_not_dressed_up_as_conflicts() -> None:
    error = sqlite3.IntegrityError("FOREIGN KEY constraint failed")
    assert _conflict(IntegrityError("INSERT ...", {}, error)) is None


def test_urls_are_shown_without_their_password() -> None:
    assert _display_url("postgresql+psycopg://canary:pw@db.local:5432/canary") == (
        "postgresql+psycopg://canary:***@db.local:5432/canary"
    )
    assert _display_url("::not a url::") == "<unparseable database URL>"
    assert sqlite_url("/var/lib/canary") == "sqlite:////var/lib/canary/canary.db"


@pytest.mark.parametrize(
    ("channel", "ok"),
    [
        ("slack:CANARY_SLACK_WEBHOOK_URL", True),
        ("webhook:TEAM_HOOK", True),
        ("slack", True),
        ("https://hooks.slack.com/services/T/B/x", False),
        ("slack:https://hooks.slack.com/services/T/B/x", False),
        ("slack:a b", False),
    ],
)
def test_a_channel_name_cannot_hold_a_url(channel: str, ok: bool) -> None:
    assert bool(CHANNEL.fullmatch(channel)) is ok
