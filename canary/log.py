"""Structured logging, configured once for the whole process.

Events are dotted names with fields (``rollout.rolled_back``, metric=..., slice=...), never
formatted strings, so that logs can be searched and tests can assert on captured events.
JSON lines when stdout is not a terminal (journald, containers), readable console otherwise.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]

_SECRET_KEYS = frozenset({"token", "api_token", "webhook_url", "slack_webhook_url", "password"})


def _redact_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Last line of defence: a field named like a secret is never written out."""
    for key in _SECRET_KEYS.intersection(event_dict):
        event_dict[key] = "**********"
    return event_dict


def configure(level: str = "info", fmt: LogFormat = "auto") -> None:
    """Set up structlog and the stdlib root logger; safe to call more than once."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_secrets,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
    # apscheduler warns "maximum number of running instances reached" whenever a tick runs
    # longer than its interval (starting a model server does); the skipped run is expected
    # and our own tick events say what happened, so only its errors are shown.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def get_logger(name: str | None = None, **fields: Any) -> structlog.stdlib.BoundLogger:
    """A logger bound to ``fields``; use dotted event names: ``log.info("policy.loaded")``."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name, **fields)
    return logger
