"""End to end: the daemon takes a registered challenger to promotion or rollback, on real
MLflow, Prometheus, HAProxy and model servers, with live load and a Slack sink."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.e2e.conftest import World
from tests.harness.prometheus import start_prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAST_STEPS = [
    {"weight": 10, "min_duration": "3s"},
    {"weight": 30, "min_duration": "3s"},
    {"weight": 50, "min_duration": "3s"},
]


def finished(summary: dict) -> bool:
    return summary["phase"] in ("promoted", "rolled_back", "aborted", "failed", "rejected")


def test_good_challenger_is_promoted_through_every_step(rollout_world):
    world: World = rollout_world(profiles={"2": {}}, steps=FAST_STEPS)
    summary = world.wait_rollout(finished, timeout=180, what="rollout ends")
    assert summary["phase"] == "promoted", summary
    rollout = world.daemon.rollout(summary["id"])
    weights = [h["canary_weight"] for h in rollout["history"] if h["phase"] == "progressing"]
    assert weights == [10, 30, 50]
    assert world.aliases()["champion"] == world.versions["2"]
    assert "challenger" not in world.aliases() or world.aliases()["challenger"] == "2"
    tags = world.version_tags(world.versions["2"])
    assert tags["canary.status"] == "promoted"
    assert tags["canary.previous_champion"] == world.versions["1"]
    # The proxy now sends every request to the new version.
    weights_now = world.haproxy_weights()
    assert weights_now["canary"] == 0
    assert weights_now["champion"] > 0
    before = world.load.stats().by_version.copy()
    time.sleep(2)  # let some requests through the promoted configuration
    after = world.load.stats().by_version
    assert after["1"] - before["1"] <= 5  # only requests already in flight
    assert after["2"] - before["2"] > 100
    # Slack heard of the start, each step and the promotion, once each.
    texts = world.slack_text()
    assert len(texts) == 4, texts
    assert "started" in texts[0].lower()
    assert all("step" in t.lower() for t in texts[1:3]), texts
    assert "promoted" in texts[3].lower()


def test_twice_the_error_rate_is_rolled_back_within_one_tick(rollout_world):
    world = rollout_world(
        profiles={"2": {"error-rate": 0.10}},
        steps=[{"weight": 10, "min_duration": "2m"}, {"weight": 50, "min_duration": "2m"}],
    )
    summary = world.wait_rollout(finished, timeout=120, what="rollout ends")
    assert summary["phase"] == "rolled_back", summary
    rollout = world.daemon.rollout(summary["id"])
    assert rollout["breaches"][0]["metric"] == "errors"
    assert rollout["breaches"][0]["estimate"] > 1.5
    # Weights back to the champion in the same tick that saw the breach: the proxy change
    # follows the rolling_back record at once (the registry write and stopping the
    # candidate's server come after it, and may take longer on a busy machine).
    events = world.daemon.logs()
    rolling = next(e for e in events if e["event"] == "rollout.rolling_back")
    rolling_at = datetime.fromisoformat(rolling["timestamp"]).timestamp()
    zero = next(
        e
        for e in events
        if e["event"] == "router.weights_applied"
        and e["canary"] == 0
        and datetime.fromisoformat(e["timestamp"]).timestamp() >= rolling_at
    )
    assert datetime.fromisoformat(zero["timestamp"]).timestamp() - rolling_at < 1.0
    history = [h["phase"] for h in rollout["history"]]
    assert history[-2:] == ["rolling_back", "rolled_back"]
    assert world.haproxy_weights()["canary"] == 0
    tags = world.version_tags(world.versions["2"])
    assert tags["canary.status"] == "rolled_back"
    assert "errors" in tags["canary.reason"]
    assert tags["canary.rollout_id"] == summary["id"]
    assert "challenger" not in world.aliases()
    message = world.slack_text()[-1]
    assert "rolled back" in message.lower()
    assert "errors" in message
    # Traffic is all on the champion again.
    before = world.load.stats().by_version.copy()
    time.sleep(2)
    after = world.load.stats().by_version
    assert after["2"] - before["2"] <= 5


def test_a_challenger_worse_for_one_group_is_rolled_back_naming_the_group(rollout_world):
    world = rollout_world(
        profiles={"2": {"group-accuracy": {"a": 0.9, "b": 0.6}}},
        steps=[{"weight": 20, "min_duration": "2m"}, {"weight": 50, "min_duration": "2m"}],
    )
    summary = world.wait_rollout(finished, timeout=120, what="rollout ends")
    assert summary["phase"] == "rolled_back", summary
    breaches = world.daemon.rollout(summary["id"])["breaches"]
    assert {(b["metric"], b["slice"]) for b in breaches} == {("accuracy", "b")}
    assert "accuracy (b)" in world.version_tags(world.versions["2"])["canary.reason"]
    message = world.slack_text()[-1]
    assert "accuracy" in message
    assert "b" in message


def test_sigkill_mid_rollout_resumes_at_the_same_step(rollout_world):
    world = rollout_world(
        profiles={"2": {}},
        steps=[
            {"weight": 10, "min_duration": "4s"},
            {"weight": 30, "min_duration": "20s"},
            {"weight": 50, "min_duration": "4s"},
        ],
    )
    at_step = world.wait_rollout(
        lambda s: s["phase"] == "progressing" and s["step"] == 1, timeout=120, what="step 2"
    )
    before = world.daemon.rollout(at_step["id"])
    world.daemon.kill()
    world.daemon.start()
    resumed = world.daemon.rollout(at_step["id"])
    assert resumed["phase"] == "progressing"
    assert resumed["step"] == 1
    assert resumed["canary_weight"] == 30
    assert resumed["history"][: len(before["history"])] == before["history"]
    events = [e["event"] for e in world.daemon.logs()]
    assert "rollout.resumed" in events
    summary = world.wait_rollout(finished, timeout=180, what="rollout ends")
    assert summary["phase"] == "promoted", summary
    final = world.daemon.rollout(summary["id"])
    steps = [h["canary_weight"] for h in final["history"] if h["phase"] == "progressing"]
    assert steps == [10, 30, 50]  # no step repeated or skipped by the restart
    texts = world.slack_text()
    assert len(texts) == len(set(texts)) == 4  # no notification sent twice


def test_prometheus_stopped_mid_rollout_holds_then_rolls_back(rollout_world, tmp_path):
    own = start_prometheus(tmp_path / "own-prometheus")
    try:
        world = rollout_world(
            profiles={"2": {}},
            steps=[{"weight": 10, "min_duration": "5m"}],
            extra_analysis={"on_query_error": {"consecutive_limit": 5, "then": "rollback"}},
            metrics_server=own,
        )
        world.wait_rollout(lambda s: s["phase"] == "progressing", timeout=120, what="progressing")
        time.sleep(3)
        own.process.stop()
        stopped_at = time.time()
        summary = world.wait_rollout(finished, timeout=60, what="rollout ends")
        assert summary["phase"] == "rolled_back", summary
        rollout = world.daemon.rollout(summary["id"])
        assert "queries failed 5 ticks in a row" in rollout["reason"]
        rolled = next(h for h in rollout["history"] if h["phase"] == "rolled_back")
        # It held for the limit first: five failed ticks, one second apart (the first may
        # fail while Prometheus is still shutting down, before stopped_at).
        failures = [e for e in world.daemon.logs() if e["event"] == "metrics.query_failed"]
        assert len(failures) >= 5
        assert rolled["at"] - stopped_at >= 3
        assert world.haproxy_weights()["canary"] == 0
    finally:
        own.process.stop()
