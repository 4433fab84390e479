"""The controller end to end with the real store and analysis, and fakes of our own
registry/router/serving/metrics interfaces, on an injected clock: a 30-minute rollout runs
in well under a second."""

from __future__ import annotations

import textwrap

import pytest

from canary.core.lifecycle import Phase
from canary.notify.outbox import Outbox
from canary.registry.base import VersionStatus
from canary.service.controller import CommandError, Controller
from canary.service.evidence import EvidenceCache
from canary.service.policies import PolicySet
from canary.service.tick import TickContext, pinned_policy
from canary.store.sql import SqlStore
from tests.unit.service.fakes import Clock, FakeRegistry, FakeRouter, FakeServing, SimSource

POLICY = textwrap.dedent(
    """
    model: credit-risk
    trigger: {new_versions: true}
    serving: {address: "127.0.0.1:18000"}
    router: {type: haproxy, runtime_api: "127.0.0.1:9999", backend: credit_risk}
    steps:
      - {weight: 5, min_duration: 2m}
      - {weight: 25, min_duration: 2m}
      - {weight: 50, min_duration: 2m}
    analysis:
      interval: 15s
      max_duration: 4h
      on_query_error: {consecutive_limit: 3, then: rollback}
      metrics:
        - name: errors
          kind: ratio
          events: model_requests_total{code=~"5.."}
          total: model_requests_total
          worse_when: higher
          tolerance: {relative: 0.1}
    offline_gate:
      accuracy: {min: 0.8, max_drop_vs_champion: 0.01}
    notify:
      webhook: {url_env: CANARY_TEST_WEBHOOK}
    """
)


class World:
    def __init__(self, tmp_path, error_rate, seed=1, store=None, registry=None, router=None):
        self.clock = Clock()
        policy_file = tmp_path / "policies" / "credit-risk.yaml"
        policy_file.parent.mkdir(exist_ok=True)
        policy_file.write_text(POLICY)
        self.policies = PolicySet(policy_file.parent)
        self.policies.load()
        self.store = store or SqlStore(f"sqlite:///{tmp_path / 'canary.db'}", clock=self.clock)
        self.registry = registry or FakeRegistry(
            versions={"1": {"accuracy": 0.9}, "2": {"accuracy": 0.9}}
        )
        self.router = router or FakeRouter()
        self.serving = FakeServing()
        self.source = SimSource(error_rate=error_rate, seed=seed)
        self.outbox = Outbox(self.store, lambda _c: None, clock=self.clock)
        self.ctx = TickContext(
            store=self.store,
            registry=self.registry,
            metrics=self.source,
            outbox=self.outbox,
            router_for=lambda _p: self.router,
            serving_for=lambda _p: self.serving,
            evidence=EvidenceCache(self.store),
            clock=self.clock,
        )
        self.controller = Controller(self.ctx, self.policies)

    def start(self):
        (rollout,) = self.controller.poll_registry()
        return rollout.id

    def run(self, rollout_id, max_ticks=2000, stop=None):
        for _ in range(max_ticks):
            report = self.controller.tick(rollout_id)
            assert report.error is None, report.error
            if report.rollout.phase.terminal or (stop and stop(report.rollout)):
                return report.rollout
            self.clock.advance(15)
        raise AssertionError("rollout did not finish")


def test_good_canary_is_promoted_through_every_step(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = world.start()
    final = world.run(rollout_id)
    assert final.phase is Phase.PROMOTED
    history = [(t.to_phase, t.canary_weight) for t in world.store.transitions(rollout_id)]
    weights = [w for phase, w in history if phase is Phase.PROGRESSING]
    assert weights == [5.0, 25.0, 50.0]
    assert history[-1] == (Phase.PROMOTED, 100.0)
    assert world.registry.aliases["champion"] == "2"
    assert world.router.backends["champion"] == world.router.backends["canary"]
    assert world.router.weights.canary == 0.0  # champion arm now serves the new version
    events = [n.entry.event for n in world.store.notifications(rollout_id=rollout_id)]
    assert events == ["started", "advanced", "advanced", "promoted"]


def test_twice_the_error_rate_is_rolled_back_with_the_metric_named(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.02}, seed=3)
    rollout_id = world.start()
    final = world.run(rollout_id)
    assert final.phase is Phase.ROLLED_BACK
    assert final.canary_weight == 0.0
    assert world.router.weights.canary == 0.0
    assert "errors regressed: rate ratio canary/baseline" in final.reason
    assert "confidence interval [" in final.reason
    version, outcome = world.registry.records[-1]
    assert (version, outcome.status) == ("2", VersionStatus.ROLLED_BACK)
    assert "errors" in outcome.reason
    (notice,) = [
        n
        for n in world.store.notifications(rollout_id=rollout_id)
        if n.entry.event == "rolled_back"
    ]
    breach = notice.entry.payload["breaches"][0]
    assert breach["metric"] == "errors"
    assert breach["estimate"] > 1.1
    assert world.serving.stopped == ["2"]


def test_weights_go_to_zero_in_the_tick_that_sees_the_breach(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.05}, seed=4)
    rollout_id = world.start()
    phases = []
    for _ in range(400):
        report = world.controller.tick(rollout_id)
        phases.append((report.rollout.phase, world.router.weights.canary))
        if report.rollout.phase.terminal:
            break
        world.clock.advance(15)
    assert phases[-1] == (Phase.ROLLED_BACK, 0.0)
    assert phases[-2][0] is Phase.PROGRESSING  # one tick: progressing -> rolled back


def test_gate_failure_is_rejected_and_never_routed(tmp_path):
    registry = FakeRegistry(versions={"1": {"accuracy": 0.9}, "2": {"accuracy": 0.85}})
    world = World(tmp_path, {"1": 0.01, "2": 0.01}, registry=registry)
    assert world.controller.poll_registry() == []
    (rejected,) = world.store.rollouts()
    assert rejected.rollout.phase is Phase.REJECTED
    assert "accuracy" in rejected.rollout.reason
    assert world.router.applied == []
    assert registry.tags["2"]["canary.status"] == "rejected"
    assert world.controller.poll_registry() == []  # never picked up again


def test_resume_after_a_crash_continues_with_the_same_evidence(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.01}, seed=7)
    rollout_id = world.start()
    for _ in range(12):
        world.controller.tick(rollout_id)
        world.clock.advance(15)
    before = world.store.get(rollout_id).rollout
    e_before = before.detail["last"]["e_value"]
    # A new controller on the same store (the old one's memory is gone), same proxy.
    resumed = World(
        tmp_path,
        {"1": 0.01, "2": 0.01},
        seed=99,
        store=world.store,
        registry=world.registry,
        router=world.router,
    )
    resumed.clock.now = world.clock.now
    evidence = resumed.ctx.evidence.get(rollout_id, pinned_policy(before))
    assert evidence.rebuilt
    assert evidence.last.e_value == pytest.approx(e_before)
    assert evidence.ticks == 12
    report = resumed.controller.tick(rollout_id)
    assert report.rollout.step == before.step
    assert report.rollout.phase is Phase.PROGRESSING
    assert len(world.store.measurements(rollout_id)) == 13


def test_proxy_weights_are_reconciled_to_the_store(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = world.start()
    world.controller.tick(rollout_id)
    assert world.router.weights.canary == 5.0
    world.router.weights = type(world.router.weights)(0.0)  # the proxy was reloaded
    world.clock.advance(15)
    world.controller.tick(rollout_id)
    assert world.router.weights.canary == 5.0


def test_query_errors_hold_then_roll_back_at_the_limit(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = world.start()
    world.controller.tick(rollout_id)
    world.source.fail_next = 3
    phases = []
    for _ in range(3):
        world.clock.advance(15)
        phases.append(world.controller.tick(rollout_id).rollout.phase)
    assert phases == [Phase.PROGRESSING, Phase.PROGRESSING, Phase.ROLLED_BACK]
    final = world.store.get(rollout_id).rollout
    assert "failed 3 ticks in a row" in final.reason
    assert world.router.weights.canary == 0.0


def test_a_failing_proxy_during_rollback_is_retried_and_never_left_on_the_canary(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = world.start()
    world.controller.tick(rollout_id)
    world.router.fail = True
    rollout = world.controller.command(rollout_id, "abort")
    assert rollout.phase is Phase.ROLLING_BACK
    world.clock.advance(15)
    assert world.controller.tick(rollout_id).rollout.phase is Phase.ROLLING_BACK
    world.router.fail = False
    world.clock.advance(15)
    final = world.controller.tick(rollout_id).rollout
    assert final.phase is Phase.ABORTED
    assert world.router.weights.canary == 0.0


def test_pause_holds_the_step_and_resume_continues(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = world.start()
    world.controller.tick(rollout_id)
    assert world.controller.command(rollout_id, "pause").phase is Phase.PAUSED
    for _ in range(20):  # 5 minutes, more than the step's 2 minutes
        world.clock.advance(15)
        assert world.controller.tick(rollout_id).rollout.step == 0
    with pytest.raises(CommandError, match="cannot pause"):
        world.controller.command(rollout_id, "pause")
    assert world.controller.command(rollout_id, "resume").phase is Phase.PROGRESSING
    world.clock.advance(15)
    assert world.controller.tick(rollout_id).rollout.step == 1


def test_registry_down_at_rollback_finishes_the_rollback_and_tags_later(tmp_path):
    world = World(tmp_path, {"1": 0.01, "2": 0.01})
    rollout_id = world.start()
    world.controller.tick(rollout_id)
    world.registry.down = True
    final = world.controller.command(rollout_id, "abort")
    assert final.phase is Phase.ABORTED
    assert world.router.weights.canary == 0.0
    assert world.store.get(rollout_id).rollout.detail["registry_pending"] is True
    world.registry.down = False
    world.controller.poll_registry()
    assert world.registry.tags["2"]["canary.status"] == "aborted"
    assert world.store.get(rollout_id).rollout.detail["registry_pending"] is False
