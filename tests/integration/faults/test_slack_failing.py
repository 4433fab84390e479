"""The Slack endpoint answers 500 and then holds requests past the client's timeout.

The sink is a real HTTP server scripted to answer the daemon's first notifications with 500,
a hang (no answer until long after the daemon's 5 s timeout), 500 and a hang again. The
rollout must keep its schedule (no tick waits for Slack), the outbox must record every
attempt and the last error of each notification, and once the sink answers 200 every
event must have reached it exactly once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from canary.store.base import DeliveryStatus
from canary.store.sql import SqlStore, sqlite_url
from tests.harness.proc import wait_until
from tests.integration.faults.conftest import FaultWorld, finished
from tests.integration.notify.sink import HANG, Sink

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEP_SECONDS = 3.0
STEPS = [
    {"weight": 20, "min_duration": f"{STEP_SECONDS:g}s"},
    {"weight": 50, "min_duration": f"{STEP_SECONDS:g}s"},
]
SLACK_TIMEOUT = 5.0  # the daemon's notifier timeout: CANARY_QUERY_TIMEOUT below
SCRIPT = (500, HANG, 500, HANG)


def test_a_failing_and_hanging_slack_never_delays_the_rollout_and_gets_each_event_once(
    fault_world: Callable[..., FaultWorld],
) -> None:
    sink = Sink()
    sink.answer(*SCRIPT)
    world = fault_world(
        profiles={"2": {}},
        steps=STEPS,
        sink=sink,
        fast=True,
        extra_env={"CANARY_QUERY_TIMEOUT": f"{SLACK_TIMEOUT:g}s"},
    )
    summary = world.wait_rollout(finished, timeout=90, what="the rollout ends")
    assert summary["phase"] == "promoted", summary

    # On schedule: the first step advanced after its 3 s plus at most a few ticks, though
    # Slack failed and hung then, and every tick of the rollout took less than the 5 s a
    # notification sent inline to the hanging sink would have held it.
    history = world.daemon.rollout(summary["id"])["history"]
    steps = [h["at"] for h in history if h["phase"] == "progressing"]
    assert len(steps) == 2, history
    assert STEP_SECONDS <= steps[1] - steps[0] < STEP_SECONDS + 3.5, history
    assert slowest_tick_bucket(world) <= SLACK_TIMEOUT

    # Every event reaches Slack once the sink answers 200: once each, no duplicates.
    store = SqlStore(sqlite_url(world.workdir / "state"))
    try:
        wait_until(
            lambda: all(
                n.status is DeliveryStatus.SENT
                for n in store.notifications(rollout_id=summary["id"])
            ),
            timeout=60,
            what="every notification delivered",
        )
        outbox = store.notifications(rollout_id=summary["id"])
    finally:
        store.close()
    assert [n.entry.event for n in outbox] == ["started", "advanced", "promoted"]
    delivered = [r.body for r in sink.delivered()]
    assert len(delivered) == len(outbox), [r.answered for r in sink.requests]
    assert len({json.dumps(body, sort_keys=True) for body in delivered}) == len(delivered)

    # The outbox kept count: one attempt per request the sink saw, and why each failed.
    assert sum(n.attempts for n in outbox) == sink.count() == len(SCRIPT) + len(outbox)
    assert any(n.attempts > 1 for n in outbox)
    for n in outbox:
        if n.attempts > 1:
            assert n.last_error is not None
            assert re.search(FAILURE, n.last_error), n.last_error
    retries = world.events("notify.retry_scheduled")
    kinds = sorted(re.search(FAILURE, str(e["error"]))[0] for e in retries)
    assert kinds == sorted(["answered HTTP 500"] * 2 + ["no answer from 127.0.0.1 within 5s"] * 2)
    assert world.alive()


FAILURE = r"answered HTTP 500|no answer from 127\.0\.0\.1 within 5s"


def slowest_tick_bucket(world: FaultWorld) -> float:
    """The smallest ``canary_tick_duration_seconds`` bucket that holds every tick so far."""
    text = httpx.get(f"{world.daemon.api}/metrics", timeout=10).text
    count = float(re.search(r"^canary_tick_duration_seconds_count (\S+)$", text, re.M)[1])
    assert count > 5
    for le, value in re.findall(
        r'^canary_tick_duration_seconds_bucket{le="([^"]+)"} (\S+)$', text, re.M
    ):
        if float(value) >= count:
            return float(le)
    raise AssertionError("no bucket holds every tick")
