"""SIGTERM while a tick is finishing: the daemon must still stop.

apscheduler's ``shutdown(wait=True)`` holds its job-store lock while it waits for the
running jobs. A tick that finishes then reschedules its rollout (``Daemon._schedule``,
which looks the job up): it used to wait for that lock while the shutdown waited for it,
and the process hung until it was killed. The soak benchmark found it: 200 rollouts, so a
tick is almost always running when SIGTERM comes.
"""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

from apscheduler.schedulers.base import STATE_STOPPED

from canary.core.lifecycle import Phase, Rollout
from canary.core.policy import parse_policy
from canary.service.daemon import Daemon
from canary.service.policies import PolicySet
from canary.service.wiring import build_runtime
from canary.settings import Settings
from tests.harness.proc import free_port

POLICY = textwrap.dedent(
    """
    model: stop-model
    trigger: {new_versions: true}
    serving: {address: "127.0.0.1:18000"}
    router: {type: haproxy, runtime_api: "127.0.0.1:9999", backend: app}
    steps: [{weight: 50, min_duration: 1h}]
    analysis:
      interval: 15s
      metrics:
        - name: errors
          kind: ratio
          events: model_requests_total{code=~"5.."}
          total: model_requests_total
          worse_when: higher
    """
)


def test_a_tick_rescheduling_its_rollout_during_shutdown_does_not_hang_the_stop(
    tmp_path: Path,
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(POLICY)
    settings = Settings(
        policies=policies,
        state_dir=tmp_path / "state",
        # Nothing listens on these: the test never reaches a backend.
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        prometheus_url=f"http://127.0.0.1:{free_port()}",
        api_host="127.0.0.1",
        api_port=0,
        registry_poll_interval=3600,
        shutdown_grace=2,
    )
    policy_set = PolicySet(policies)
    policy_set.load()
    daemon = Daemon(settings, build_runtime(settings), policy_set)
    now = time.time()
    rollout = Rollout(
        id="stop-model-v2",
        model="stop-model",
        version="2",
        champion_version="1",
        phase=Phase.PROGRESSING,
        step=0,
        canary_weight=50.0,
        created_at=now,
        updated_at=now,
        step_started_at=now,
        analysis_started_at=now,
        detail={"policy": parse_policy(POLICY).model_dump(mode="json")},
    )
    in_job = threading.Event()

    def finishing_tick() -> None:
        """Stands for a tick that ends as SIGTERM comes: it reschedules its rollout once the
        shutdown has begun (and taken apscheduler's locks)."""
        in_job.set()
        deadline = time.monotonic() + 10
        while daemon.scheduler.state != STATE_STOPPED and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the shutdown now holds the job-store lock and waits for this job
        daemon._schedule(rollout)

    daemon.start()
    try:
        assert daemon.leadership.acting()
        daemon.scheduler.add_job(finishing_tick, id="finishing-tick")
        assert in_job.wait(10), "the job never ran"
    finally:
        stopper = threading.Thread(target=daemon.stop, name="stopper", daemon=True)
        stopper.start()
        stopper.join(timeout=20)
    assert not stopper.is_alive(), "daemon.stop() hung: shutdown and tick wait for each other"
    assert not daemon.scheduler.running
