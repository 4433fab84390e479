"""The daemon: scheduling, the leader lock, the HTTP server and signals, around a Controller.

- apscheduler runs the registry poll and one tick job per active rollout at its policy's
  interval; a job never overlaps itself (``max_instances=1``) and missed runs coalesce;
- only the leader acts (``canary.service.leader``): a file lock in the state directory on a
  SQLite store, a lease row on a PostgreSQL one. Others stand by and take over when the lock
  frees; a leader whose lease runs out removes its jobs, lets the tick in progress finish
  and starts no other, and stands by again;
- SIGTERM finishes the ticks that are running and exits; SIGHUP reloads the policies and
  keeps the old ones if any file is invalid;
- on start, every active rollout in the store is scheduled again, so a daemon killed mid-
  rollout continues the same rollout at the same step, and the first tick reconciles the
  proxy's weights with what the store says.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import uvicorn
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from canary.core.lifecycle import Rollout
from canary.errors import CanaryError
from canary.log import get_logger
from canary.service.api import create_app
from canary.service.controller import Controller
from canary.service.leader import Leadership, leader_lock_for
from canary.service.policies import PolicySet
from canary.service.tick import pinned_policy
from canary.service.wiring import Runtime
from canary.settings import Settings

log = get_logger(__name__)

POLL_JOB = "registry-poll"


class Daemon:
    def __init__(self, settings: Settings, runtime: Runtime, policies: PolicySet) -> None:
        self.settings = settings
        self.runtime = runtime
        self.policies = policies
        self.controller = Controller(runtime.ctx, policies, on_change=self._on_change)
        self.leadership = Leadership(
            leader_lock_for(settings),
            on_elected=self._on_elected,
            on_lost=self._on_lost,
            renew_interval=settings.leader_renew_interval,
            retry_interval=min(1.0, settings.leader_renew_interval),
        )
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=8)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )
        self._stop = threading.Event()
        # apscheduler's shutdown(wait=True) holds its job-store lock while it waits for the
        # running jobs, so a tick that adds or looks up a job then would wait for that lock
        # forever, and the shutdown for the tick. Jobs are only touched under this lock,
        # and not at all once stop() has begun.
        self._jobs_lock = threading.Lock()
        self._stopping = False
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self.api_port: int | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.scheduler.start()
        self._start_api()
        self.runtime.outbox.start()
        if not self.leadership.start():
            log.warning("daemon.standby", lock=self.leadership.lock.where)

    def _on_elected(self, epoch: int) -> None:
        self.runtime.ctx.telemetry.leader.set(1)
        log.info("daemon.leading", lock=self.leadership.lock.where, epoch=epoch, pid=os.getpid())
        with self._jobs_lock:
            if self._stopping:
                return
            self.scheduler.add_job(
                self._poll,
                "interval",
                seconds=self.settings.registry_poll_interval,
                id=POLL_JOB,
                next_run_time=_now(),
                replace_existing=True,
            )
        try:
            active = self.controller.active()
        except CanaryError as exc:  # the poll job schedules them once the store answers
            log.warning("daemon.resume_failed", error=str(exc))
            return
        for rollout in active:
            log.info(
                "rollout.resumed",
                rollout=rollout.id,
                phase=rollout.phase.value,
                step=rollout.step,
                canary_weight=rollout.canary_weight,
            )
            self._schedule(rollout)

    def _on_lost(self, epoch: int, reason: str) -> None:
        """Stop acting: no poll, no tick job; a tick already running finishes (its writes are
        fenced by the store's revisions). The leadership keeps trying to lead again."""
        with self._jobs_lock, contextlib.suppress(SchedulerNotRunningError):
            for job in [] if self._stopping else self.scheduler.get_jobs():
                if job.id == POLL_JOB or job.id.startswith("tick:"):
                    with contextlib.suppress(JobLookupError):
                        job.remove()
        self.runtime.ctx.telemetry.leader.set(0)
        log.warning("daemon.lost_leadership", epoch=epoch, reason=reason, pid=os.getpid())

    def run(self) -> int:
        """Start, then block until SIGTERM/SIGINT; returns the exit status."""
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        self.start()
        while not self._stop.is_set():
            self._stop.wait(0.5)
        self.stop()
        return 0

    def stop(self) -> None:
        log.info("daemon.stopping", grace=self.settings.shutdown_grace)
        with self._jobs_lock:  # waits for a tick that is adding a job; none will after
            self._stopping = True
        done = threading.Event()

        def shutdown() -> None:
            self.scheduler.shutdown(wait=True)  # lets running ticks finish
            done.set()

        self.leadership.retire()  # keeps renewing while the running ticks finish
        threading.Thread(target=shutdown, name="scheduler-shutdown", daemon=True).start()
        finished = done.wait(self.settings.shutdown_grace)
        if not finished:
            log.warning("daemon.shutdown_timeout", grace=self.settings.shutdown_grace)
        if self._server is not None:
            self._server.should_exit = True
            if self._server_thread is not None:
                self._server_thread.join(timeout=5)
        self.runtime.close()
        # A tick still running past the grace keeps the lease until it lapses on its own.
        self.leadership.stop(release=finished)
        self.runtime.ctx.telemetry.leader.set(0)
        log.info("daemon.stopped")

    def request_stop(self) -> None:
        self._stop.set()

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("daemon.signal", signal=signal.Signals(signum).name)
        self._stop.set()

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=self.reload, name="policy-reload", daemon=True).start()

    def reload(self) -> list[str]:
        problems = self.policies.reload()
        if problems:
            self.runtime.ctx.telemetry.policy_reload_errors.inc()
        return problems

    # --- jobs ----------------------------------------------------------------------------

    def _poll(self) -> None:
        if not self.leadership.acting():
            return
        try:
            for rollout in self.controller.poll_registry():
                self._schedule(rollout)
            for rollout in self.controller.active():  # any not yet scheduled (no-op if all are)
                self._schedule(rollout)
            self.runtime.ctx.telemetry.count_phases(
                [s.rollout for s in self.runtime.ctx.store.rollouts()]
            )
        except CanaryError as exc:
            log.warning("registry.poll_error", error=str(exc))
        except Exception as exc:
            log.exception("registry.poll_crashed", error=str(exc))

    def _schedule(self, rollout: Rollout) -> None:
        job_id = f"tick:{rollout.id}"
        if rollout.phase.terminal:
            with self._jobs_lock, contextlib.suppress(JobLookupError):
                if not self._stopping:
                    self.scheduler.remove_job(job_id)
            return
        interval = pinned_policy(rollout).analysis.interval
        # Lock order: the leadership's, then the jobs' (_on_lost runs under the former).
        with self.leadership.steady() as acting, self._jobs_lock:
            if not acting or self._stopping or self.scheduler.get_job(job_id) is not None:
                return
            self.scheduler.add_job(
                self._tick,
                "interval",
                args=[rollout.id],
                seconds=interval,
                id=job_id,
                next_run_time=_now(),
                replace_existing=True,
                misfire_grace_time=max(1, int(interval)),
            )

    def _tick(self, rollout_id: str) -> None:
        """The tick job, guarded: a term that has run out starts no tick, even in the moment
        before the leadership's watchdog has taken the jobs away (or after a long pause)."""
        if not self.leadership.acting():
            log.info("daemon.tick_refused", rollout=rollout_id, reason="not the leader")
            return
        term = self.leadership.term
        log.debug("daemon.tick", rollout=rollout_id, epoch=term.epoch if term else None)
        self.controller.tick(rollout_id)

    def _on_change(self, rollout: Rollout) -> None:
        self._schedule(rollout)

    # --- HTTP ----------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        if not self.scheduler.running:
            return False, "scheduler not running"
        if not self.policies.all():
            return False, "no policies loaded"
        if not self.leadership.acting():
            return True, "standby: another controller holds the leader lock"
        return True, "ready"

    def _start_api(self) -> None:
        from canary.service.status_page import add_status_page

        app = create_app(
            self.controller,
            token=self.settings.api_token,
            metrics_registry=self.runtime.ctx.telemetry.registry,
            ready=self.ready,
            extra_routes=add_status_page(self.controller),
        )
        config = uvicorn.Config(
            app,
            host=self.settings.api_host,
            port=self.settings.api_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        # Run outside the main thread, uvicorn leaves signal handling to us.
        self._server = server
        self._server_thread = threading.Thread(target=server.run, name="api", daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            if not self._server_thread.is_alive():
                raise CanaryError(
                    f"the HTTP API could not listen on {self.settings.api_host}:"
                    f"{self.settings.api_port}"
                )
            time.sleep(0.02)
        sockets: list[Any] = [s for srv in server.servers for s in srv.sockets]
        self.api_port = sockets[0].getsockname()[1] if sockets else self.settings.api_port
        log.info("api.listening", host=self.settings.api_host, port=self.api_port)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
