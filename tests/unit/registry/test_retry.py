"""Backoff delays and the retry loop, with time and chance injected."""

from __future__ import annotations

import pytest

from canary.errors import RegistryError
from canary.registry.retry import Backoff, retry


def test_delays_grow_exponentially_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(base=0.5, factor=2.0, cap=3.0, jitter=0.0)
    assert [backoff.delay(n, 0.99) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_takes_up_to_its_fraction_off_each_delay() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=60.0, jitter=0.5)
    assert backoff.delay(2, 0.0) == 4.0
    assert backoff.delay(2, 0.5) == 3.0
    assert backoff.delay(2, 0.999) == pytest.approx(2.002)
    assert Backoff(jitter=1.0).delay(0, 0.999) == pytest.approx(0.0005)


def test_a_huge_attempt_number_stays_at_the_cap() -> None:
    assert Backoff(cap=30.0, jitter=0.0).delay(10_000, 0.0) == 30.0


def test_retry_returns_after_transient_failures_and_sleeps_between_them() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RegistryError("MLflow is down")
        return "ok"

    result = retry(
        flaky,
        what="candidates",
        attempts=5,
        backoff=Backoff(base=1.0, factor=2.0, cap=10.0, jitter=0.5),
        sleep=sleeps.append,
        draw=lambda: 0.5,
    )
    assert result == "ok"
    assert len(calls) == 3
    assert sleeps == [0.75, 1.5]


def test_retry_gives_up_with_the_last_error() -> None:
    sleeps: list[float] = []
    attempt = iter(range(10))

    def down() -> None:
        raise RegistryError(f"down {next(attempt)}")

    with pytest.raises(RegistryError, match="down 2"):
        retry(down, what="x", attempts=3, sleep=sleeps.append, draw=lambda: 0.0)
    assert len(sleeps) == 2


def test_errors_that_retrying_cannot_fix_are_raised_at_once() -> None:
    sleeps: list[float] = []

    def broken() -> None:
        raise ValueError("invalid model name")

    with pytest.raises(ValueError, match="invalid model name"):
        retry(broken, what="x", attempts=5, sleep=sleeps.append)
    assert sleeps == []


@pytest.mark.parametrize(
    "kwargs", [{"base": 0}, {"factor": 0.5}, {"cap": 0.1, "base": 1.0}, {"jitter": 1.5}]
)
def test_nonsense_backoff_is_refused(kwargs) -> None:
    with pytest.raises(ValueError, match=r"need base|jitter is a fraction"):
        Backoff(**kwargs)
