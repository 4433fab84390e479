"""Retrying a backend call with exponential backoff and jitter.

Backends fail fast on purpose (a down MLflow raises RegistryError within seconds instead of
MLflow's own minutes of retries), so the caller decides how long to keep trying. Jitter
spreads the retries of several controllers so they do not hit a recovering server together.
Only ``BackendError`` is retried by default: a bug or an invalid name will not get better.

Nothing here is specific to the registry; it lives here because the registry is its first
user, and any other backend caller may import it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from canary.errors import BackendError
from canary.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delays of ``base * factor**attempt`` seconds, capped at ``cap``, minus random jitter.

    ``jitter`` is the fraction of each delay that is random: 0 gives fixed delays, 1 gives
    "full jitter" (uniform between 0 and the delay).
    """

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError("need base > 0, factor >= 1 and cap >= base")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def delay(self, attempt: int, draw: float) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based); draw in [0, 1)."""
        ceiling = min(self.cap, self.base * self.factor ** min(attempt, 64))
        return ceiling * (1.0 - self.jitter * draw)


def retry(
    call: Callable[[], T],
    *,
    what: str,
    attempts: int = 4,
    backoff: Backoff | None = None,
    retry_on: tuple[type[BaseException], ...] = (BackendError,),
    sleep: Callable[[float], None] = time.sleep,
    draw: Callable[[], float] = random.random,
) -> T:
    """Call ``call`` up to ``attempts`` times; re-raise the last error if all fail.

    ``sleep`` and ``draw`` are injected so tests run without waiting and without chance.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    policy = backoff or Backoff()
    for attempt in range(attempts):
        try:
            return call()
        except retry_on as exc:
            if attempt + 1 >= attempts:
                log.warning("retry.gave_up", what=what, attempts=attempts, error=str(exc)[:300])
                raise
            wait = policy.delay(attempt, draw())
            log.info(
                "retry.waiting",
                what=what,
                attempt=attempt + 1,
                wait=round(wait, 3),
                error=str(exc)[:300],
            )
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
