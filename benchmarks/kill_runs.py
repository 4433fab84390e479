"""SIGKILL the daemon at random points of the same rollout, many times, and check that nothing
changes: the same outcome as a run without kills, one promotion, one Slack message per event.

The daemon promises that a tick interrupted anywhere can simply run again (every action is
idempotent, every phase change is saved before the next phase's actions run, notifications
go through a stored outbox with a dedupe key). One kill in the e2e tests shows it once; this
script shows it across many kills aimed at the moments where it is hardest to keep: while the
candidate's server is starting, right after a step change, inside a tick, right after a Slack
delivery, between ``promoting`` or ``rolling_back`` and the registry write, and right after
the final phase while its announcement is on its way.

Real services are set up once: MLflow, Prometheus, an HTTP Slack sink; then per set (a good
challenger and a bad one, each its own registered model): a champion model server, HAProxy,
live load and a Prometheus job. Each run registers a fresh version of the set's model with
the ``challenger`` alias and starts ``canary run`` on a fresh store; the first run of a set is
not killed and is the reference outcome. After a promoted run the champion alias and the
proxy are put back on version 1, so every run starts from the same state.

    python -m benchmarks.kill_runs [--runs 20] [--seed 7]

Prints progress and a Markdown table, saves it to benchmarks/results/kill_runs.md, and exits
1 if any run differs from its reference or shows a duplicate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from canary.core.lifecycle import Phase
from canary.log import configure
from canary.notify.message import EMOJI
from canary.sim.config import SimConfig
from canary.sim.loadgen import LoadGenerator
from canary.store.base import DeliveryStatus
from canary.store.sql import SqlStore, sqlite_url
from tests.e2e.conftest import PORTS, TOKEN, free_port_range, write_policy
from tests.harness.haproxy import HAProxyInstance, runtime_command, start_haproxy
from tests.harness.mlflow_server import CLIENT_ENV, MlflowServer, start_mlflow_server
from tests.harness.model_server import ModelServer, ModelServerFactory
from tests.harness.proc import ManagedProcess, free_port
from tests.harness.prometheus import PrometheusServer, start_prometheus
from tests.integration.notify.sink import Sink

RESULTS = Path(__file__).parent / "results" / "kill_runs.md"

STEPS: list[dict[str, Any]] = [
    {"weight": 10, "min_duration": "3s"},
    {"weight": 30, "min_duration": "3s"},
    {"weight": 50, "min_duration": "3s"},
]
"""Short steps at a 1 s analysis interval: a run takes seconds, yet has three step changes."""

TOLERANCES = {"errors": {"relative": 1.0}, "accuracy": {"absolute": 0.1}}
"""Wider than the e2e tests' (0.5, 0.05): the last step's minimum sample, which a promotion
waits for, then comes in seconds instead of half a minute at this load."""

PROFILES: dict[str, dict[str, Any]] = {
    "good": {},
    # Worse for group b only: the rollback must name accuracy (b), every time.
    "bad": {"group-accuracy": {"a": 0.9, "b": 0.65}},
}

LEASE_S = 30.0  # canary.notify.outbox.Outbox's claim lease
"""The outbox's claim lease: a message claimed by a killed daemon is retried after it."""

TERMINAL = {p.value for p in Phase if p.terminal}
ENDED_EVENTS = {f"rollout.{p}" for p in TERMINAL}

# --- where a kill lands ---------------------------------------------------------------------

Event = dict[str, Any]


@dataclass(frozen=True)
class Trigger:
    """A moment to aim a kill at: a log event of the running daemon (or a time after start)."""

    name: str
    rank: int  # the order the moments come in during a rollout, to plan feasible sequences
    matches: Callable[[Event], bool] | None  # None: ``delay`` seconds after the process starts
    delay: tuple[float, float]  # seconds after the event (or the start), drawn uniformly
    what: str


def _is(*names: str) -> Callable[[Event], bool]:
    return lambda e: e.get("event") in names


def _outcome_recorded(e: Event) -> bool:
    return e.get("event") == "registry.outcome_recorded" and e.get("status") != "in_progress"


TRIGGERS: dict[str, Trigger] = {
    t.name: t
    for t in (
        Trigger(
            "created",
            0,
            _is("rollout.gating", "rollout.starting"),
            (0.0, 0.0),
            "the rollout was just created",
        ),
        Trigger("spawn", 0, _is("serving.starting"), (0.0, 0.3), "the candidate is starting"),
        Trigger(
            "time",
            1,
            None,
            (0.5, 6.0),
            "a random time after the daemon started (the first: after the version is registered)",
        ),
        Trigger("step", 1, _is("rollout.progressing"), (0.0, 0.1), "right after a step change"),
        Trigger("tick", 1, _is("daemon.tick"), (0.0, 0.03), "inside a tick"),
        Trigger("notify", 1, _is("notify.sent"), (0.0, 0.02), "right after a Slack delivery"),
        Trigger(
            "ending",
            2,
            _is("rollout.promoting", "rollout.rolling_back"),
            (0.0, 0.05),
            "promoting / rolling back, before the registry write",
        ),
        Trigger(
            "registry",
            3,
            _outcome_recorded,
            (0.0, 0.01),
            "after the registry write, before the final phase is saved",
        ),
        Trigger(
            "ended",
            4,
            _is(*ENDED_EVENTS),
            (0.0, 0.02),
            "right after the final phase, while it is announced",
        ),
    )
}


@dataclass(frozen=True)
class Kill:
    trigger: str
    delay: float

    @property
    def spec(self) -> Trigger:
        return TRIGGERS[self.trigger]


def plan_kills(rng: random.Random, count: int) -> list[Kill]:
    """``count`` kills at seeded, feasible moments, in the order a rollout reaches them."""
    names = list(TRIGGERS)
    chosen: list[str] = []
    while len(chosen) < count:
        name = rng.choice(names)
        if TRIGGERS[name].rank == 0 and any(TRIGGERS[c].rank == 0 for c in chosen):
            continue  # the rollout is created and its server spawned only once
        chosen.append(name)
    chosen.sort(key=lambda n: TRIGGERS[n].rank)
    return [Kill(n, round(rng.uniform(*TRIGGERS[n].delay), 3)) for n in chosen]


@dataclass
class KillDone:
    trigger: str
    delay: float
    after: str  # the last event the killed daemon logged
    phase: str  # the rollout's last logged phase
    at: float  # seconds since the run began
    wall: float = field(default_factory=time.time)  # when the kill was sent (wall clock)


# --- one daemon process at a time -------------------------------------------------------------


@dataclass
class DaemonProcess:
    """``canary run`` started, killed and restarted; its log read as it is written."""

    workdir: Path
    env: dict[str, str]
    api: str
    process: ManagedProcess | None = None
    starts: int = 0
    started_at: float = 0.0
    _offset: int = 0
    _partial: bytes = b""

    def start(self) -> None:
        self.starts += 1
        self.process = ManagedProcess(
            name=f"canary-run-{self.starts}",
            argv=[sys.executable, "-m", "canary.cli", "run"],
            workdir=self.workdir,
            env=self.env,
        )
        self.process.start()
        self.started_at = time.monotonic()
        self._offset, self._partial = 0, b""

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        self.process.wait_ready(
            lambda: httpx.get(f"{self.api}/readyz", timeout=2).status_code == 200,
            timeout=timeout,
        )

    def kill(self) -> None:
        """SIGKILL the daemon alone, like an OOM kill: the model servers it started live on."""
        assert self.process is not None
        assert self.process.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.popen.pid, signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=40)

    def new_events(self) -> list[Event]:
        """JSON log lines written since the last call (complete lines only)."""
        if self.process is None:
            return []
        try:
            with self.process.log_path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            if line.startswith(b"{"):
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        return events

    def all_events(self) -> list[Event]:
        events: list[Event] = []
        for number in range(1, self.starts + 1):
            path = self.workdir / f"canary-run-{number}.log"
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        events.append(json.loads(line))
        return events


# --- what the Slack sink received -------------------------------------------------------------

_BY_EMOJI = {emoji: event for event, emoji in EMOJI.items()}
_ROLLOUT = re.compile(r"Rollout (\S+)\.$")
_STEP = re.compile(r"\bStep (\d+)\b")

MessageKey = tuple[str, str, int]
"""(rollout id, event, step): one Slack message per key."""


def slack_key(body: Any) -> MessageKey | None:
    """The dedupe key of a Slack message, read back from what the sink received."""
    if not isinstance(body, dict):
        return None
    text = str(body.get("text", ""))
    header = str(((body.get("blocks") or [{}])[0].get("text") or {}).get("text", ""))
    rollout = _ROLLOUT.search(text)
    event = _BY_EMOJI.get(header.split(" ", 1)[0])
    if rollout is None or event is None:
        return None
    step = _STEP.search(text)
    return rollout.group(1), event, int(step.group(1)) if step else 0


# --- results ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    kind: str
    index: int  # 0: the reference run, without kills
    version: str
    rollout_id: str | None = None
    planned: list[Kill] = field(default_factory=list)
    kills: list[KillDone] = field(default_factory=list)
    phase: str | None = None
    breaches: tuple[tuple[str, str | None], ...] = ()
    announced: tuple[tuple[str, int], ...] = ()  # (event, step) in the order of the history
    promotions: int = 0  # transitions to promoted in the store
    alias_moves: int = 0  # champion alias moves the daemons logged
    messages: int = 0  # Slack messages received for this rollout
    duplicates: int = 0  # Slack messages beyond one per (rollout, event, step)
    resent: int = 0  # of those, copies resent after a kill in the delivery window
    late: int = 0  # deliveries that waited for a killed daemon's claim to lapse
    orphans: int = 0  # servers of this version left running by a killed daemon
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.phase == Phase.ROLLED_BACK.value:
            where = ", ".join(f"{m} ({s})" if s else m for m, s in self.breaches)
            return f"rolled_back: {where}"
        return str(self.phase)

    @property
    def ok(self) -> bool:
        return not self.problems


# --- the world: shared services, one set per kind of challenger -------------------------------


@dataclass
class Services:
    """Started once for every run: MLflow, Prometheus and the Slack sink."""

    mlflow: MlflowServer
    prometheus: PrometheusServer
    sink: Sink
    workdir: Path


class RolloutSet:
    """One registered model with its champion, proxy, load and Prometheus job; runs the same
    rollout of a fresh version again and again, from the same starting state."""

    def __init__(self, services: Services, kind: str, job: str, *, rps: float = 300.0) -> None:
        self.services = services
        self.kind = kind
        self.job = job
        self.model = f"kill-{kind}-{uuid.uuid4().hex[:8]}"
        self.root = services.workdir / self.model
        self.root.mkdir(parents=True)
        self.rps = rps
        self.servers = ModelServerFactory(self.root / "servers")
        self._haproxy_dir = Path(tempfile.mkdtemp(prefix="canary-haproxy-"))
        self.champion: ModelServer | None = None
        self.haproxy: HAProxyInstance | None = None
        self.load: LoadGenerator | None = None
        self.policies = self.root / "policies"
        self.champion_version = ""
        self.reference: RunResult | None = None

    def __enter__(self) -> RolloutSet:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def setup(self) -> None:
        mlflow, prom = self.services.mlflow, self.services.prometheus
        self.champion_version = mlflow.register_version(
            self.model, {"accuracy": 0.9}, aliases=["champion"]
        )
        self.champion = self.servers(
            SimConfig(
                model=self.model,
                version=self.champion_version,
                seed=5,
                error_rate=0.05,
                accuracy=0.9,
                label_delay_s=0.0,
            )
        )
        first_port = free_port_range(PORTS)
        prom.scrape(
            self.job,
            [self.champion.target]
            + [f"127.0.0.1:{p}" for p in range(first_port, first_port + PORTS)],
            interval="1s",
        )
        self.haproxy = start_haproxy(self._haproxy_dir, {"champion": self.champion.target})
        profiles = self.root / "profiles.yaml"
        self._write_profiles(self.kind)
        self.policies.mkdir()
        write_policy(
            self.policies / f"{self.model}.yaml",
            self.model,
            self.haproxy,
            first_port,
            profiles,
            STEPS,
        )
        policy_path = self.policies / f"{self.model}.yaml"
        policy = yaml.safe_load(policy_path.read_text())
        for metric in policy["analysis"]["metrics"]:
            metric["tolerance"] = TOLERANCES[metric["name"]]
        policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
        self.load = LoadGenerator(
            self.haproxy.url, rps=self.rps, groups={"a": 0.5, "b": 0.5}, workers=6, seed=3
        )
        self.load.start()
        prom.wait_for_value(
            f'sum(model_requests_total{{model="{self.model}"}})', lambda v: v > 0, timeout=60
        )

    def _write_profiles(self, kind: str) -> None:
        """Every version a run may register behaves as ``kind`` says (the file is read when
        the daemon starts a version's server, so each run may choose its own)."""
        profile = {"error-rate": 0.05, "accuracy": 0.9, **PROFILES[kind]}
        profiles = self.root / "profiles.yaml"
        profiles.write_text(yaml.safe_dump({str(v): profile for v in range(2, 500)}))

    def close(self) -> None:
        if self.load is not None:
            self.load.request_stop()
            self.load.stop()
        for pid in _servers_of(self.model):
            _kill_group(pid)
        self.servers.stop_all()
        if self.haproxy is not None:
            self.haproxy.process.stop()
        with contextlib.suppress(Exception):
            self.services.prometheus.remove(self.job)
        shutil.rmtree(self._haproxy_dir, ignore_errors=True)

    # --- one run --------------------------------------------------------------------------

    def run(
        self,
        index: int,
        kills: Sequence[Kill],
        *,
        kind: str | None = None,
        timeout: float = 240.0,
        log: Callable[[str], None] = lambda _m: None,
    ) -> RunResult:
        """Run the rollout of a fresh version once, killing the daemon as ``kills`` say.

        ``kind`` (``good`` or ``bad``) is how the new version behaves; the set's by default.
        """
        kind = kind or self.kind
        self._write_profiles(kind)
        mlflow = self.services.mlflow
        workdir = self.root / f"run-{index:02d}"
        state = workdir / "state"
        api_port = free_port()
        env = {
            "CANARY_POLICIES": str(self.policies),
            "CANARY_STATE_DIR": str(state),
            "CANARY_MLFLOW_TRACKING_URI": mlflow.url,
            "CANARY_PROMETHEUS_URL": self.services.prometheus.url,
            "CANARY_API_PORT": str(api_port),
            "CANARY_API_TOKEN": TOKEN,
            "CANARY_SLACK_WEBHOOK_URL": self.services.sink.url("/slack"),
            "CANARY_REGISTRY_POLL_INTERVAL": "1s",
            "CANARY_QUERY_TIMEOUT": "2s",
            "CANARY_LOG_FORMAT": "json",
            "CANARY_LOG_LEVEL": "debug",  # ``daemon.tick``: where a kill lands inside a tick
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
        daemon = DaemonProcess(workdir, env, f"http://127.0.0.1:{api_port}")
        started = time.monotonic()
        daemon.start()
        daemon.wait_ready()
        version = mlflow.register_version(self.model, {"accuracy": 0.9}, aliases=["challenger"])
        daemon.started_at = time.monotonic()  # a ``time`` kill of the first daemon: from here
        result = RunResult(kind, index, version, planned=list(kills))
        store = SqlStore(sqlite_url(state))  # the daemon created it before it was ready
        try:
            self._drive(daemon, result, store, started, timeout, log)
            self._check(daemon, result, store)
        except Exception as exc:  # a broken run is a result too: the table says why
            result.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            store.close()
            self._reset(daemon, result)
            result.seconds = time.monotonic() - started
        return result

    def _drive(
        self,
        daemon: DaemonProcess,
        result: RunResult,
        store: SqlStore,
        started: float,
        timeout: float,
        log: Callable[[str], None],
    ) -> None:
        """Watch the daemon's log, kill it at the planned moments and restart it, until the
        rollout has ended (and the last planned kill after the end, if any, was made)."""
        pending = list(result.planned)
        due: float | None = None
        last_event, last_phase = "", ""
        ended_at: float | None = None
        next_store_check = 0.0
        prefix = f"{self.model}-v{result.version}-"
        while True:
            now = time.monotonic()
            if now - started > timeout:
                raise TimeoutError(f"rollout not over after {timeout:.0f}s (last: {last_event})")
            for event in daemon.new_events():
                name = str(event.get("event", ""))
                rollout = str(event.get("rollout", ""))
                if rollout.startswith(prefix):
                    result.rollout_id = rollout
                    if name.startswith("rollout."):
                        last_phase = name.removeprefix("rollout.")
                last_event = name
                head = pending[0] if pending else None
                matches = head.spec.matches if head is not None else None
                if due is None and head is not None and matches is not None and matches(event):
                    due = now + head.delay
            if due is None and pending and pending[0].spec.matches is None:
                due = daemon.started_at + pending[0].delay
            if due is not None and now >= due:
                kill = pending.pop(0)
                daemon.kill()
                done = KillDone(kill.trigger, kill.delay, last_event, last_phase, now - started)
                result.kills.append(done)
                log(
                    f"    kill {len(result.kills)}: {kill.trigger} +{kill.delay * 1000:.0f} ms "
                    f"(last event {last_event}, phase {last_phase or '-'}) at {done.at:.1f}s"
                )
                due = None
                daemon.start()
            if now >= next_store_check:
                next_store_check = now + 0.2
                if ended_at is None and self._ended(store, result):
                    ended_at = now
            if ended_at is not None:
                head = pending[0] if pending else None
                # Once it has ended only a kill aimed at the end itself still makes sense:
                # wait for it if this daemon logged the end (or may be about to log it).
                if head is None or head.trigger != "ended":
                    return
                if due is None and now - ended_at > 2.0:
                    return
            time.sleep(0.005)

    @staticmethod
    def _ended(store: SqlStore, result: RunResult) -> bool:
        if result.rollout_id is None:
            return False
        stored = store.get(result.rollout_id)
        return stored is not None and stored.rollout.phase.terminal

    def _check(self, daemon: DaemonProcess, result: RunResult, store: SqlStore) -> None:
        """Wait for the outbox to drain, then compare store, registry, proxy and Slack."""
        assert result.rollout_id is not None
        rid = result.rollout_id
        daemon.wait_ready()  # the last restart delivers what the killed one left
        deadline = time.monotonic() + LEASE_S + 30
        while True:
            items = store.notifications(rollout_id=rid)
            if items and all(i.status is not DeliveryStatus.PENDING for i in items):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox not drained: {[i.status.value for i in items]}")
            time.sleep(0.25)
        time.sleep(1.0)  # a duplicate would be on its way now, if there were one
        stored = store.get(rid)
        assert stored is not None
        rollout = stored.rollout
        transitions = store.transitions(rid)
        rollouts = [
            s.rollout.id
            for s in store.rollouts()
            if s.rollout.model == self.model and s.rollout.version == result.version
        ]
        result.phase = rollout.phase.value
        result.breaches = tuple(
            sorted({(b["metric"], b.get("slice")) for b in rollout.detail.get("breaches", [])})
        )
        result.announced = tuple((t.event, t.step) for t in transitions if t.event)
        result.promotions = sum(t.to_phase is Phase.PROMOTED for t in transitions)
        result.late = sum(i.attempts > 1 for i in items)
        problems = result.problems
        if len(rollouts) != 1:
            problems.append(f"{len(rollouts)} rollouts of version {result.version}")
        if any(i.status is not DeliveryStatus.SENT for i in items):
            problems.append("an announcement was not delivered")
        outbox = Counter((i.entry.event, int(i.entry.payload["step"])) for i in items)
        if any(n > 1 for n in outbox.values()) or len(set(result.announced)) != len(
            result.announced
        ):
            problems.append(f"an event was recorded twice: {sorted(outbox.items())}")

        received = [(k, r.at) for r in self.services.sink.delivered() if (k := slack_key(r.body))]
        mine = Counter(k for k, _ in received if k[0] == rid)
        result.messages = sum(mine.values())
        result.duplicates = sum(n - 1 for n in mine.values())
        want = Counter((rid, event, step) for event, step in result.announced)
        for key, count in mine.items():
            if count < 2:
                continue
            first = min(at for k, at in received if k == key)
            if in_delivery_window(first, [k.wall for k in result.kills]):
                result.resent += count - 1  # at least once, by design: see the note
            else:
                problems.append(f"duplicate Slack message: {key}")
        if set(mine) != set(want):
            problems.append(f"Slack got {sorted(mine)}, the history announces {sorted(want)}")

        events = daemon.all_events()
        result.alias_moves = sum(
            any(str(c).startswith("alias champion ") for c in e.get("changes", []))
            for e in events
            if e.get("event") == "registry.outcome_recorded" and e.get("version") == result.version
        )
        client = self.services.mlflow.client()
        aliases = dict(client.get_registered_model(self.model).aliases)
        tags = dict(client.get_model_version(self.model, result.version).tags)
        if tags.get("canary.rollout_id") != rid:
            problems.append(f"registry rollout tag {tags.get('canary.rollout_id')!r}")
        if "challenger" in aliases:
            problems.append("the challenger alias is still set")
        if result.alias_moves > 1:
            problems.append(f"champion alias moved {result.alias_moves} times")
        if result.phase == Phase.PROMOTED.value:
            if result.promotions != 1:
                problems.append(f"{result.promotions} promotions in the history")
            if aliases.get("champion") != result.version:
                problems.append(f"champion alias on {aliases.get('champion')}")
            if tags.get("canary.status") != "promoted":
                problems.append(f"registry status {tags.get('canary.status')!r}")
            if tags.get("canary.previous_champion") != self.champion_version:
                problems.append(f"previous champion {tags.get('canary.previous_champion')!r}")
        else:
            if result.promotions:
                problems.append("promoted and then something else")
            if aliases.get("champion") != self.champion_version:
                problems.append(f"champion alias moved to {aliases.get('champion')}")
            if result.phase == Phase.ROLLED_BACK.value and tags.get("canary.status") != (
                "rolled_back"
            ):
                problems.append(f"registry status {tags.get('canary.status')!r}")
        assert self.haproxy is not None
        weight = runtime_command(self.haproxy, f"get weight {self.haproxy.backend}/canary")
        if not weight.startswith("0 "):
            problems.append(f"canary weight {weight.strip()} after the rollout")

    def _reset(self, daemon: DaemonProcess, result: RunResult) -> None:
        """Stop the daemon; put the champion alias and the proxy back on version 1."""
        assert self.haproxy is not None
        assert self.champion is not None
        runtime_command(
            self.haproxy,
            f"set server {self.haproxy.backend}/champion addr 127.0.0.1 port {self.champion.port}",
        )
        runtime_command(self.haproxy, f"set weight {self.haproxy.backend}/canary 0")
        client = self.services.mlflow.client()
        client.set_registered_model_alias(self.model, "champion", self.champion_version)
        with contextlib.suppress(Exception):
            client.delete_registered_model_alias(self.model, "challenger")
        daemon.stop()
        # Left running: the promoted version's server (it was the champion) and any server a
        # killed daemon started but never recorded, which nobody would ever stop.
        alive = _servers_of(self.model, result.version)
        result.orphans = max(0, len(alive) - (result.phase == Phase.PROMOTED.value))
        for pid in alive:
            _kill_group(pid)
        if result.orphans:
            result.problems.append(f"{result.orphans} servers of version {result.version} leaked")

    # --- judging against the reference ---------------------------------------------------

    def compare(self, result: RunResult) -> None:
        """Record how ``result`` differs from the set's reference outcome, if it does."""
        ref = self.reference
        if ref is None or ref is result:
            return
        if result.outcome != ref.outcome:
            result.problems.append(f"outcome {result.outcome!r}, reference {ref.outcome!r}")
        if ref.phase == Phase.PROMOTED.value and result.announced != ref.announced:
            result.problems.append(f"announced {result.announced}, reference {ref.announced}")


def _servers_of(model: str, version: str | None = None) -> list[int]:
    """Pids of simulated model servers of ``model`` (``version``), found in /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "canary.sim.model_server" not in words or "--model" not in words:
            continue
        if words[words.index("--model") + 1] != model:
            continue
        if version is not None and (
            "--version" not in words or words[words.index("--version") + 1] != version
        ):
            continue
        pids.append(int(entry.name))
    return pids


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# --- the report -------------------------------------------------------------------------------


def kills_text(result: RunResult) -> str:
    if result.index == 0:
        return "none (reference)"
    done = [f"{k.trigger}+{k.delay * 1000:.0f}ms@{k.phase or 'start'}" for k in result.kills]
    skipped = len(result.planned) - len(result.kills)
    return ", ".join(done) + (f" ({skipped} skipped: rollout over)" if skipped else "")


DELIVERY_WINDOW_S = 1.0
"""A kill at most this long after Slack received a message is taken to have landed between
Slack's answer and the outbox recording it (a few milliseconds in practice)."""


def in_delivery_window(received_at: float, kills: Sequence[float]) -> bool:
    """Whether a kill came just after the endpoint received the first copy of a message:
    the one place at-least-once delivery resends it."""
    return any(0.0 <= kill - received_at <= DELIVERY_WINDOW_S for kill in kills)


def markdown(results: Sequence[RunResult], meta: Mapping[str, str]) -> str:
    lines = [
        "# SIGKILL at random points of the same rollout",
        "",
        "Generated by `python -m benchmarks.kill_runs`. "
        + ", ".join(f"{k}: {v}" for k, v in meta.items())
        + ".",
        "",
        "Each set has its own registered model; run 0 is the reference (no kill). Every other",
        "run registers a fresh version and the `canary run` daemon is SIGKILLed at the moments",
        "listed (trigger + delay after the daemon logged it, @ the last rollout event that daemon",
        "logged: a phase, `created` or `resumed`), then restarted, until the rollout ends.",
        "*Slack* is messages received (duplicates; of them resent after a kill in the",
        "delivery window; dedupe key: rollout id, event, step); *late* counts deliveries that",
        "waited for a killed daemon's outbox claim to lapse; *alias moves* are the champion",
        "alias moves the daemons logged; *orphans* are servers a killed daemon started but",
        "never recorded.",
        "",
        "| set | run | kills | outcome | same as reference | promotions | alias moves "
        "| Slack (dup; resent) | late | orphans | s | ok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        same = "reference" if r.index == 0 else ("yes" if r.ok else "NO")
        lines.append(
            f"| {r.kind} | {r.index} | {kills_text(r)} | {r.outcome} | {same} | {r.promotions} "
            f"| {r.alias_moves} | {r.messages} ({r.duplicates}; {r.resent}) | {r.late} "
            f"| {r.orphans} "
            f"| {r.seconds:.0f} | {'yes' if r.ok else 'NO: ' + '; '.join(r.problems)} |"
        )
    kills = [k for r in results for k in r.kills]
    lines += [
        "",
        f"Kills made: {len(kills)} in {sum(1 for r in results if r.index)} runs; by trigger: "
        + ", ".join(f"{n} {c}" for n, c in sorted(Counter(k.trigger for k in kills).items()))
        + ".",
        f"Runs that differ from their reference or show a duplicate other than a resend: "
        f"{sum(not r.ok for r in results)}. Messages resent after a kill in the delivery "
        f"window: {sum(r.resent for r in results)} of {sum(r.messages for r in results)}.",
        "",
        "Triggers: " + "; ".join(f"`{t.name}`: {t.what}" for t in TRIGGERS.values()) + ".",
        "",
        "A duplicate has one known source, stated in `canary/notify/outbox.py`: delivery is at",
        "least once. A daemon killed after the Slack endpoint received a message but before the",
        "outbox recorded it as sent (a window of a few milliseconds) leaves it claimed; when the",
        f"claim's lease ({LEASE_S:g} s) lapses, the restarted daemon sends it again, and a Slack",
        "incoming webhook takes no idempotency key that could drop the copy (the JSON webhook",
        "channel sends one). The other choice, at most once, could lose a rollback alert. Such a",
        "copy is counted as *resent* when a kill came within"
        f" {DELIVERY_WINDOW_S:g} s after the first one arrived; any other",
        "duplicate fails the run. A kill in the same place before the endpoint received the",
        "message only delays it by the lease: that is what *late* counts.",
        "",
    ]
    return "\n".join(lines)


# --- services for a run outside pytest ------------------------------------------------------------


def start_mlflow(workdir: Path) -> MlflowServer:
    """``mlflow server`` as the test session starts it; this process is its client."""
    os.environ.update(CLIENT_ENV)
    return start_mlflow_server(workdir)


@contextlib.contextmanager
def start_services(workdir: Path) -> Iterator[Services]:
    mlflow = start_mlflow(workdir / "mlflow")
    prometheus: PrometheusServer | None = None
    sink: Sink | None = None
    try:
        prometheus = start_prometheus(workdir / "prometheus")
        sink = Sink().start()
        yield Services(mlflow, prometheus, sink, workdir)
    finally:
        if sink is not None:
            sink.stop()
        if prometheus is not None:
            prometheus.process.stop()
        mlflow.process.stop()


def run_set(
    world: Services,
    kind: str,
    runs: int,
    rng: random.Random,
    *,
    plan: Callable[[random.Random], list[Kill]] = lambda r: plan_kills(r, r.randint(1, 3)),
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """The reference run, then ``runs`` runs with kills, of one set; each compared."""
    results: list[RunResult] = []
    with RolloutSet(world, kind, f"kill_runs_{kind}_{uuid.uuid4().hex[:6]}") as rollout_set:
        for index in range(runs + 1):
            kills = [] if index == 0 else plan(rng)
            log(
                f"[{kind} {index}/{runs}] "
                + (", ".join(k.trigger for k in kills) if kills else "reference, no kill")
            )
            result = rollout_set.run(index, kills, log=log)
            if index == 0:
                rollout_set.reference = result
                if not result.ok:
                    log(f"    reference run failed: {result.problems}")
            rollout_set.compare(result)
            log(
                f"    -> {result.outcome}, {len(result.kills)} kills, Slack {result.messages} "
                f"({result.duplicates} dup, {result.resent} resent), {result.seconds:.0f}s, "
                + ("ok" if result.ok else "DIFFERS: " + "; ".join(result.problems))
            )
            results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    configure(level="warning")  # the store this script reads would log every open
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # Stopped by a signal, it still stops every server it started (the ``finally`` blocks):
    # started in the background, SIGINT may be ignored, and SIGTERM would skip them.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20, help="runs with kills, split over the sets")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sets", default="good,bad", help="challenger sets: good, bad")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    kinds = [k for k in args.sets.split(",") if k]
    rng = random.Random(args.seed)
    began = time.monotonic()
    results: list[RunResult] = []
    with (
        tempfile.TemporaryDirectory(prefix="canary-kill-runs-") as tmp,
        start_services(Path(tmp)) as world,
    ):
        share = [args.runs // len(kinds) + (i < args.runs % len(kinds)) for i in range(len(kinds))]
        for kind, runs in zip(kinds, share, strict=True):
            results += run_set(world, kind, runs, rng)
    wall = time.monotonic() - began
    meta = {
        "seed": str(args.seed),
        "runs with kills": str(args.runs),
        "wall time": f"{wall / 60:.1f} min",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
    }
    report = markdown(results, meta)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
