"""SIGKILL the daemon at the hardest moments of a rollout, twice per run, and check that the
rollout ends as it would without kills: one promotion, one Slack message per event.

The machinery is the kill benchmark's (``benchmarks.kill_runs``), on the session's real MLflow
and Prometheus, with HAProxy, model servers, live load and an HTTP Slack sink. The kills are
aimed, not random, so the test is repeatable: while the candidate's server is starting (the
restarted daemon must adopt it, not start a second one), while the registry is being written
after ``promoting`` was saved (the promotion must finish once, and be announced once), and
right after ``rolling_back`` is saved (the rollback must finish after the restart). None of
them lands while a message is in flight, so no delivery waits for a dead daemon's claim.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks.kill_runs import Kill, RolloutSet, RunResult, Services
from tests.harness.mlflow_server import MlflowServer
from tests.harness.prometheus import PrometheusServer
from tests.integration.notify.sink import Sink

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GOOD_KILLS = [Kill("spawn", 0.05), Kill("ending", 0.02)]
BAD_KILLS = [Kill("spawn", 0.05), Kill("ending", 0.0)]
# What the same rollout announces without kills (the benchmark's reference run shows it).
PROMOTED_EVENTS = (("started", 0), ("advanced", 1), ("advanced", 2), ("promoted", 2))


def assert_every_kill_made(result: RunResult, kills: list[Kill]) -> None:
    assert [k.trigger for k in result.kills] == [k.trigger for k in kills], result.kills


def test_rollouts_killed_twice_end_as_without_kills(
    tmp_path: Path,
    mlflow_server: MlflowServer,
    prometheus: PrometheusServer,
    prometheus_job: str,
) -> None:
    sink = Sink().start()
    world = Services(mlflow_server, prometheus, sink, tmp_path)
    try:
        # Two models, each with its own proxy, load and daemon: the two runs go side by side
        # (most of a run is waiting for ticks and restarts, so their waits overlap).
        with (
            RolloutSet(world, "good", prometheus_job) as good_set,
            RolloutSet(world, "bad", f"{prometheus_job}_bad") as bad_set,
            ThreadPoolExecutor(max_workers=2) as pool,
        ):
            good_run = pool.submit(good_set.run, 1, GOOD_KILLS, timeout=150)
            bad_run = pool.submit(bad_set.run, 1, BAD_KILLS, timeout=150)
            good, bad = good_run.result(), bad_run.result()
    finally:
        sink.stop()

    # Each run's own checks: one rollout for the version, every announcement delivered,
    # Slack got exactly the history's events once each, registry tags and aliases right,
    # the proxy back at 0 % canary, no model server left behind.
    assert good.problems == [], good.problems
    assert bad.problems == [], bad.problems
    assert_every_kill_made(good, GOOD_KILLS)
    assert_every_kill_made(bad, BAD_KILLS)

    assert good.outcome == "promoted"
    assert good.kills[1].phase == "promoting"  # killed while the registry was being written
    assert good.announced == PROMOTED_EVENTS
    assert good.promotions == 1
    assert good.alias_moves <= 1  # 0 when the kill fell between the move and its log line
    assert (good.messages, good.duplicates) == (4, 0)

    assert bad.outcome == "rolled_back: accuracy (b)"
    assert bad.kills[1].phase == "rolling_back"  # killed before traffic left the canary
    assert bad.promotions == 0
    assert bad.alias_moves == 0
    assert bad.announced[0] == ("started", 0)
    assert bad.announced[-1][0] == "rolled_back"
    assert (bad.messages, bad.duplicates) == (len(bad.announced), 0)
    assert good.orphans == bad.orphans == 0
