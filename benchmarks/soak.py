"""Soak: hundreds of concurrent rollouts on one ``canary run`` process for minutes on end.

A controller that runs for weeks must not grow, fall behind or start failing with the
number of rollouts it carries. This benchmark starts the real daemon (its own SQLite store,
its scheduler, its HTTP API) with N rollouts already progressing, against a real Prometheus
scraping two simulated model versions that take live load through a real HAProxy, and
watches it from outside:

- every ``--sample`` seconds: the daemon's resident memory (``/proc/PID/status``), its CPU
  time, the machine's load average and busy share (other work on the machine shows in the
  figures, so it is recorded beside them), and the daemon's own ``/metrics`` (ticks run by
  outcome, the tick-duration histogram, errors by kind);
- at the end, from the store and the daemon's log: every tick's start time per rollout and
  when the rollout was scheduled, which give the ticks run against the ticks due, the
  longest gap between two ticks of one rollout (a tick is *missed* when a rollout goes more
  than two intervals without one) and how late ticks start after their due time.

The rollouts are written straight into the store in phase ``progressing``, each with its
own model name and pinned policy (the four-check shape: an error ratio, a latency
histogram, accuracy by group, a fairness parity check; interval 15 s), so the daemon
resumes them all at start, exactly as after a restart. Every policy reads the same model
series (two model servers stand in for 2N), and every rollout's router drives the same
HAProxy backend at the same 50 % weight. No MLflow runs: the policy folder's one policy
belongs to a model whose rollout is running, so the registry poll has nothing to start
(a rollout that ended would fail to tag the registry, and the report counts it).

At the end the daemon gets SIGTERM, as from systemd, and must exit within
``--stop-timeout`` seconds; one that does not gets SIGABRT first, so its log holds every
thread's stack (what it was waiting for).

    python -m benchmarks.soak [--rollouts 200] [--minutes 10]
    python -m benchmarks.soak --rollouts 5 --minutes 0.5      # smoke run, ~1 minute
    python -m benchmarks.soak --tracemalloc 60 --workdir DIR  # where memory grows; keep files

Prints Markdown tables and saves them to benchmarks/results/soak.md (``--output`` to
write elsewhere). Exits 1 if a claim fails: memory slope after warm-up at or above
``--max-slope`` MB/min (checked on runs with at least five minutes after warm-up), any
missed tick, any tick error, a rollout no longer progressing at the end, or a daemon that
does not exit on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from canary import log
from canary.core.lifecycle import Phase, Rollout
from canary.core.policy import parse_policy
from canary.sim.config import SimConfig
from canary.sim.loadgen import LoadGenerator
from canary.store.sql import SqlStore, sqlite_url
from tests.harness.haproxy import HAProxyInstance, start_haproxy
from tests.harness.model_server import ModelServer, ModelServerFactory
from tests.harness.proc import ManagedProcess, free_port, http_ok
from tests.harness.prometheus import PrometheusServer, start_prometheus

RESULTS = Path(__file__).resolve().parent / "results" / "soak.md"
REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "soak-model"  # the series every rollout's selectors read
MIN_CHECKED_MINUTES = 5.0  # a slope over a shorter window says little about a leak

# The two versions run the same code, but on a busy machine one process can get less CPU
# than the other for minutes, and a latency check with no tolerance rightly sees a canary
# with 6 % more slow requests as worse. The soak measures the controller, not detection: the
# latency check allows 50 % more slow requests, so only a real stall would end a rollout.
POLICY = textwrap.dedent(
    """
    model: {model}
    trigger: {{new_versions: true}}
    serving: {{address: "{canary}"}}
    router: {{type: haproxy, runtime_api: "{runtime_api}", backend: {backend}}}
    steps: [{{weight: 50, min_duration: 48h}}]
    analysis:
      interval: {interval}s
      max_duration: 72h
      metrics:
        - name: errors
          kind: ratio
          events: model_requests_total{{model="soak-model", code=~"5.."}}
          total: model_requests_total{{model="soak-model"}}
          worse_when: higher
          tolerance: {{relative: 0.2}}
        - name: latency
          kind: histogram
          buckets: model_request_duration_seconds_bucket{{model="soak-model"}}
          tolerance: {{relative: 0.5}}
        - name: accuracy
          kind: ratio
          events: model_labelled_total{{model="soak-model", correct="true"}}
          total: model_labelled_total{{model="soak-model"}}
          worse_when: lower
          slice_by: group
          tolerance: {{absolute: 0.05}}
      fairness:
        - name: parity
          positives: model_predictions_total{{model="soak-model", predicted="1"}}
          total: model_predictions_total{{model="soak-model"}}
          slice_by: group
    """
)


# --- what one look at the daemon sees --------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The daemon at one moment: ``t`` seconds after it became ready."""

    t: float
    rss_mb: float
    cpu_s: float
    threads: int
    load1: float  # the machine's one-minute load average
    machine_busy_s: float  # CPU seconds all cores spent busy since boot
    machine_total_s: float  # CPU seconds all cores existed since boot
    ticks_ok: float
    ticks_error: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last
    duration_sum: float  # seconds, all ticks so far
    errors: Mapping[str, float]
    measurement_errors: float

    @property
    def ticks(self) -> float:
        return self.ticks_ok + self.ticks_error


def read_proc(pid: int) -> tuple[float, float, int]:
    """Resident memory (MB), CPU seconds (user + system) and thread count of ``pid``."""
    rss_kib = 0
    threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    # Fields after the command name (which may hold spaces) in /proc/PID/stat.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(stat[11]) + int(stat[12])) / ticks_per_s  # utime, stime
    return rss_kib / 1024, cpu_s, threads


def read_machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of all cores since boot (``/proc/stat``): the share of the
    machine other work took while the daemon ran is part of what the figures mean."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    return (total - idle) / ticks_per_s, total / ticks_per_s


def parse_daemon_metrics(text: str) -> dict[str, object]:
    """The counters this benchmark follows, from the daemon's ``/metrics`` exposition."""
    ticks: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    errors: dict[str, float] = {}
    measurement_errors = 0.0
    duration_sum = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "canary_ticks_total":
                ticks[s.labels["outcome"]] = s.value
            elif s.name == "canary_tick_duration_seconds_bucket":
                buckets.append((float(s.labels["le"]), s.value))
            elif s.name == "canary_tick_duration_seconds_sum":
                duration_sum = s.value
            elif s.name == "canary_errors_total":
                errors[s.labels["kind"]] = s.value
            elif s.name == "canary_measurements_total" and s.labels["outcome"] == "error":
                measurement_errors = s.value
    buckets.sort()
    return {
        "ticks_ok": ticks.get("ok", 0.0),
        "ticks_error": ticks.get("error", 0.0),
        "buckets": tuple(buckets),
        "duration_sum": duration_sum,
        "errors": errors,
        "measurement_errors": measurement_errors,
    }


# --- summaries (pure) ------------------------------------------------------------------------


def histogram_quantile(
    q: float, buckets: Sequence[tuple[float, float]]
) -> tuple[float, float, float]:
    """Prometheus's ``histogram_quantile`` on cumulative buckets, with the bucket it is in.

    Returns (estimate, lower bound, upper bound): the estimate interpolates linearly inside
    the bucket, so it is only as sharp as the bucket; the bounds say how sharp. NaN when
    the histogram is empty. In the +Inf bucket the estimate is the highest finite bound.
    """
    if not buckets or buckets[-1][1] <= 0:
        return math.nan, math.nan, math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower, lower, upper
            if count == below:
                return upper, lower, upper
            return lower + (upper - lower) * (rank - below) / (count - below), lower, upper
        lower, below = upper, count
    return lower, lower, math.inf


def bucket_delta(
    later: Sequence[tuple[float, float]], earlier: Sequence[tuple[float, float]]
) -> tuple[tuple[float, float], ...]:
    """The histogram of the observations made between two readings of it."""
    before = dict(earlier)
    return tuple((upper, count - before.get(upper, 0.0)) for upper, count in later)


def slope_per_minute(times_s: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against time, per minute (NaN under 2 points)."""
    if len(times_s) < 2:
        return math.nan
    mean_t = statistics.fmean(times_s)
    mean_v = statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times_s)
    if spread == 0:
        return math.nan
    cov = sum((t - mean_t) * (v - mean_v) for t, v in zip(times_s, values, strict=True))
    return 60.0 * cov / spread


def histogram_max(buckets: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Bounds (lower, upper) of the highest non-empty bucket: where the slowest tick lies."""
    lower, below = 0.0, 0.0
    found = (math.nan, math.nan)
    for upper, count in buckets:
        if count > below:
            found = (lower, upper)
        lower, below = upper, count
    return found


@dataclass(frozen=True)
class TickTimes:
    """What the ticks' start times say: ticks run and due, gaps, lateness."""

    run: int
    due: int
    missed: int  # gaps of more than two intervals (counting the window's edges)
    first_due_s: float  # from the daemon's launch to the first tick job's first due time
    schedule_spread_s: float  # from the first rollout scheduled to the last
    max_gap_s: float
    gap_p99_s: float
    lag_p50_s: float
    lag_p90_s: float
    lag_p99_s: float
    lag_max_s: float
    worst: str = ""  # the rollout with the longest gap


def _pick(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted ``values`` (NaN when empty)."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else math.nan


def tick_times(
    starts: Mapping[str, Sequence[float]],
    scheduled: Mapping[str, float],
    interval: float,
    launched: float,
    end: float,
    finished: Mapping[str, float] | None = None,
) -> TickTimes:
    """Summarise each rollout's tick start times between its scheduling and ``end``.

    The daemon adds one interval job per rollout, first due the moment it is added
    (``scheduled``) and then every ``interval`` after that (apscheduler counts from due
    times, not from when a run started). A rollout is therefore due at s, s + I, ... up to
    ``end``. A gap of more than two intervals between two of its ticks, or between s or
    ``end`` and its first or last tick, is a missed tick. A tick's lag is how long after its
    due time it started: apscheduler never starts a run later than its grace (one interval)
    after it was due, so the due time is the latest s + k * I not after the tick. A rollout
    the log gives no schedule time for is taken to be due from its first tick. A rollout
    that ended (``finished``: when it entered a terminal phase) is due no more after that.
    """
    missed = 0
    run = due = 0
    gaps: list[float] = []
    lags: list[float] = []
    firsts: list[float] = []
    worst, max_gap = "", 0.0
    for rollout_id, seen in starts.items():
        times = sorted(seen)
        start = scheduled.get(rollout_id, times[0] if times else end)
        stop = min(end, (finished or {}).get(rollout_id, end))
        firsts.append(start)
        times = [t for t in times if start <= t <= stop]
        run += len(times)
        due += int((stop - start) // interval) + 1 if stop >= start else 0
        rollout_gaps = [b - a for a, b in itertools.pairwise([start, *times, stop])]
        gaps.extend(rollout_gaps[1:-1])
        missed += sum(1 for g in rollout_gaps if g > 2 * interval)
        if max(rollout_gaps) > max_gap:
            max_gap, worst = max(rollout_gaps), rollout_id
        lags.extend((t - start) % interval for t in times)
    gaps.sort()
    lags.sort()
    return TickTimes(
        run=run,
        due=due,
        missed=missed,
        first_due_s=(min(firsts) - launched) if firsts else math.nan,
        schedule_spread_s=(max(firsts) - min(firsts)) if firsts else math.nan,
        max_gap_s=max_gap,
        gap_p99_s=_pick(gaps, 0.99),
        lag_p50_s=_pick(lags, 0.5),
        lag_p90_s=_pick(lags, 0.9),
        lag_p99_s=_pick(lags, 0.99),
        lag_max_s=lags[-1] if lags else math.nan,
        worst=worst,
    )


def schedule_times(log_lines: Iterable[str]) -> dict[str, float]:
    """When the daemon scheduled each rollout, from its ``rollout.resumed`` log events.

    The event is written just before the rollout's tick job is added with its first run due
    at once, so its timestamp is that due time to within the microseconds it takes to add
    the job. The last event of a rollout counts (a daemon that lost and won the lead again
    schedules anew). Lines that are not JSON events are skipped.
    """
    out: dict[str, float] = {}
    for line in log_lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("event") != "rollout.resumed":
            continue
        at = datetime.fromisoformat(str(event["timestamp"]))
        out[str(event["rollout"])] = at.timestamp()
    return out


# --- the world -------------------------------------------------------------------------------


@dataclass
class World:
    """Everything the daemon talks to, started for this run and stopped after it."""

    workdir: Path
    prometheus: PrometheusServer
    servers: ModelServerFactory
    champion: ModelServer
    canary: ModelServer
    haproxy: HAProxyInstance
    load: LoadGenerator

    def stop(self) -> None:
        """Load first, so nothing counts requests the stopped servers refuse."""
        self.load.stop()
        self.haproxy.process.stop()
        shutil.rmtree(self.haproxy.workdir, ignore_errors=True)
        self.servers.stop_all()
        self.prometheus.process.stop()


def start_world(workdir: Path, rps: float, scrape: str) -> World:
    """Prometheus, two model servers behind HAProxy and the load, with data already scraped
    (a daemon started before the first samples would see its first ticks find nothing)."""
    prometheus = start_prometheus(workdir / "prometheus")
    servers = ModelServerFactory(workdir / "servers")
    try:
        # Two equally good versions: no rollout should end, whatever the evidence says.
        champion = servers(SimConfig(model=MODEL, version="1", error_rate=0.02, seed=1))
        canary = servers(SimConfig(model=MODEL, version="2", error_rate=0.02, seed=2))
        prometheus.scrape("soak", [champion.target, canary.target], interval=scrape)
        # A short folder of its own: unix socket paths are limited to 107 bytes.
        haproxy_dir = Path(tempfile.mkdtemp(prefix="canary-soak-haproxy-"))
        haproxy = start_haproxy(haproxy_dir, {"champion": champion.target, "canary": canary.target})
        load = LoadGenerator(haproxy.url, rps=rps, groups={"a": 0.5, "b": 0.5}, seed=7)
        load.start()
        prometheus.wait_for_value(
            f'count(model_requests_total{{model="{MODEL}"}} > 0)', lambda v: v >= 2, timeout=60
        )
    except BaseException:
        servers.stop_all()
        prometheus.process.stop()
        raise
    return World(workdir, prometheus, servers, champion, canary, haproxy, load)


def policy_text(world: World, model: str, interval: float) -> str:
    """The soak policy for ``model``, pointing at this world's servers and HAProxy."""
    return POLICY.format(
        model=model,
        canary=world.canary.target,
        runtime_api=world.haproxy.runtime_tcp.removeprefix("tcp:"),
        backend=world.haproxy.backend,
        interval=f"{interval:g}",
    )


def seed_store(state_dir: Path, world: World, n: int, interval: float) -> list[str]:
    """Write ``n`` progressing rollouts, each with its own model and pinned policy."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore(sqlite_url(state_dir))
    now = time.time()
    ids = []
    try:
        for i in range(n):
            model = f"soak-{i:04d}"
            policy = parse_policy(policy_text(world, model, interval))
            rollout = Rollout(
                id=f"{model}-v2",
                model=model,
                version="2",
                champion_version="1",
                phase=Phase.PROGRESSING,
                step=0,
                canary_weight=50.0,
                created_at=now,
                updated_at=now,
                step_started_at=now,
                analysis_started_at=now,
                canary_address=world.canary.target,
                detail={"policy": policy.model_dump(mode="json"), "step_canary_start": 0.0},
            )
            store.save(rollout, expected_revision=0)
            ids.append(rollout.id)
    finally:
        store.close()
    return ids


# Runs ``canary run`` with tracemalloc on from SOAK_TRACEMALLOC_EVERY seconds after the start,
# dumping a snapshot that often after: where memory grows, by source line, without touching
# the daemon's code. Snapshot i is taken (i + 2) * every seconds after the start.
TRACEMALLOC_BOOT = textwrap.dedent(
    """
    import os, sys, threading, time, tracemalloc
    folder, every = os.environ["SOAK_TRACEMALLOC_DIR"], float(os.environ["SOAK_TRACEMALLOC_EVERY"])
    def dump():
        time.sleep(every)  # tracing the imports would make the start many times slower
        tracemalloc.start(int(os.environ["SOAK_TRACEMALLOC_FRAMES"]))
        i = 0
        while True:
            time.sleep(every)
            tracemalloc.take_snapshot().dump(os.path.join(folder, f"{i:04d}.snap"))
            i += 1
    threading.Thread(target=dump, name="tracemalloc-dump", daemon=True).start()
    from canary.cli import main
    main(["run"])
    """
)


def start_daemon(
    workdir: Path, world: World, interval: float, tracemalloc_every: float = 0.0
) -> tuple[ManagedProcess, str]:
    """``canary run`` on the seeded store, as a process of its own; returns it and its API.

    With ``tracemalloc_every`` > 0 the daemon runs under tracemalloc and dumps a snapshot
    that often into ``workdir/tracemalloc`` (slower: for finding a leak, not for timing).
    """
    policies = workdir / "policies"
    policies.mkdir()
    # The policy in force belongs to a model whose rollout runs: the poll starts nothing.
    (policies / "soak.yaml").write_text(policy_text(world, "soak-0000", interval))
    api_port = free_port()
    env = {
        "CANARY_POLICIES": str(policies),
        "CANARY_STATE_DIR": str(workdir / "state"),
        # Nothing listens there; the poll has no reason to call it (see the module doc).
        "CANARY_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "CANARY_PROMETHEUS_URL": world.prometheus.url,
        "CANARY_API_PORT": str(api_port),
        "CANARY_API_TOKEN": secrets.token_hex(16),
        "CANARY_LOG_FORMAT": "json",
        "CANARY_LOG_LEVEL": "info",
        "PYTHONPATH": str(REPO_ROOT),
        # A daemon that will not stop is sent SIGABRT: every thread's stack goes to its log.
        "PYTHONFAULTHANDLER": "1",
    }
    argv = [sys.executable, "-m", "canary.cli", "run"]
    if tracemalloc_every > 0:
        (workdir / "tracemalloc").mkdir()
        env["SOAK_TRACEMALLOC_DIR"] = str(workdir / "tracemalloc")
        env["SOAK_TRACEMALLOC_EVERY"] = f"{tracemalloc_every:g}"
        env["SOAK_TRACEMALLOC_FRAMES"] = "1"
        argv = [sys.executable, "-c", TRACEMALLOC_BOOT]
    daemon = ManagedProcess(name="canary-run", argv=argv, workdir=workdir, env=env)
    daemon.start()
    api = f"http://127.0.0.1:{api_port}"
    daemon.wait_ready(lambda: http_ok(f"{api}/readyz"), timeout=60)
    return daemon, api


# --- the run ---------------------------------------------------------------------------------


def stop_daemon(daemon: ManagedProcess, timeout: float) -> tuple[float, bool]:
    """SIGTERM, as systemd would; returns the seconds to exit and whether it hung.

    A daemon still running after ``timeout`` gets SIGABRT, which its fault handler turns
    into a dump of every thread's stack in its log (what it was waiting for), then SIGKILL.
    """
    assert daemon.popen is not None
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    try:
        daemon.popen.wait(timeout=timeout)
        return time.monotonic() - started, False
    except subprocess.TimeoutExpired:
        seconds = time.monotonic() - started
        daemon.signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.popen.wait(timeout=10)
        daemon.stop(timeout=10)
        return seconds, True


def take_sample(pid: int, api: str, t: float) -> Sample:
    """One look at the daemon from outside: /proc, the machine, and its ``/metrics``."""
    rss, cpu, threads = read_proc(pid)
    busy, total = read_machine_cpu()
    text = httpx.get(f"{api}/metrics", timeout=10).text
    parsed = parse_daemon_metrics(text)
    return Sample(
        t=t,
        rss_mb=rss,
        cpu_s=cpu,
        threads=threads,
        load1=os.getloadavg()[0],
        machine_busy_s=busy,
        machine_total_s=total,
        **parsed,  # type: ignore[arg-type]
    )


@dataclass
class RunResult:
    """Everything one run measured, for judging and reporting."""

    rollouts: int
    minutes: float
    interval: float
    samples: list[Sample]
    ticks: TickTimes
    phases: dict[str, int]
    db_bytes: int
    measurements: int
    stop_seconds: float
    stop_hung: bool  # still running ``--stop-timeout`` seconds after SIGTERM
    load_sent: int
    load_failed: int
    load_unanswered: int
    load_avg: tuple[tuple[float, ...], tuple[float, ...]]
    log_errors: int
    rps: float
    scrape: str
    growth: list[str]  # tracemalloc: the top growing source lines after warm-up, if traced
    ended: dict[str, int]  # why rollouts left progressing: "phase: reason" -> rollouts
    ended_examples: list[str]  # one reason in full per phase entered


def run(args: argparse.Namespace) -> RunResult:
    """Start the world and the daemon, watch it for ``--minutes``, stop, read the store."""
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=False)
        return _run_in(args.workdir, args)
    with tempfile.TemporaryDirectory(prefix="canary-soak-") as tmp:
        return _run_in(Path(tmp), args)


def _run_in(workdir: Path, args: argparse.Namespace) -> RunResult:
    """The run itself, in ``workdir``: the daemon's log and store are read before it goes."""
    load_before = os.getloadavg()
    print(f"... starting Prometheus, 2 model servers, HAProxy, {args.rps:g} rps", flush=True)
    world = start_world(workdir, args.rps, args.scrape)
    try:
        seed_store(workdir / "state", world, args.rollouts, args.interval)
        print(f"... {args.rollouts} rollouts in the store; starting canary run", flush=True)
        launched = time.time()
        daemon, api = start_daemon(workdir, world, args.interval, args.tracemalloc)
        assert daemon.popen is not None
        pid = daemon.popen.pid
        begin = time.monotonic()
        duration = args.minutes * 60.0
        samples: list[Sample] = []
        try:
            while True:
                now = time.monotonic() - begin
                samples.append(take_sample(pid, api, now))
                if len(samples) % max(1, round(60 / args.sample)) == 0:
                    s = samples[-1]
                    print(
                        f"    {now / 60:5.1f} min  rss {s.rss_mb:6.1f} MB  "
                        f"ticks {s.ticks:7.0f}  errors {s.ticks_error:.0f}",
                        flush=True,
                    )
                if now >= duration:
                    break
                # On a fixed grid, so a slow sample does not stretch the ones after it.
                due = min(duration, len(samples) * args.sample)
                time.sleep(max(0.0, due - (time.monotonic() - begin)))
            end_wall = time.time()
        finally:
            stop_seconds, hung = stop_daemon(daemon, timeout=args.stop_timeout)
        stats = world.load.stats()
        log_lines = daemon.log_path.read_text(errors="replace").splitlines()
        log_errors = count_error_lines(log_lines)
        scheduled = schedule_times(log_lines)
        growth = memory_growth(workdir / "tracemalloc", args.tracemalloc, warmup_of(duration))
    finally:
        world.stop()
    store = SqlStore(sqlite_url(workdir / "state"))
    try:
        starts: dict[str, list[float]] = {}
        phases: dict[str, int] = {}
        finished: dict[str, float] = {}
        ended: Counter[str] = Counter()
        examples: dict[str, str] = {}
        measurements = 0
        for stored in store.rollouts():
            rollout = stored.rollout
            phases[rollout.phase.value] = phases.get(rollout.phase.value, 0) + 1
            seen = [m.at for m in store.measurements(rollout.id)]
            measurements += len(seen)
            starts[rollout.id] = seen
            moves = store.transitions(rollout.id)
            if rollout.phase.terminal and moves:
                finished[rollout.id] = moves[-1].at
                # The first move out of progressing says why the rollout ended.
                why = next((m for m in moves if m.from_phase is Phase.PROGRESSING), moves[-1])
                ended[reason_shape(f"{why.to_phase.value}: {why.reason}")] += 1
                examples.setdefault(why.to_phase.value, f"{rollout.id}: {why.reason}")
    finally:
        store.close()
    db_bytes = sum(p.stat().st_size for p in (workdir / "state").glob("canary.db*"))
    ticks = tick_times(starts, scheduled, args.interval, launched, end_wall, finished)
    return RunResult(
        rollouts=args.rollouts,
        minutes=args.minutes,
        interval=args.interval,
        samples=samples,
        ticks=ticks,
        phases=phases,
        db_bytes=db_bytes,
        measurements=measurements,
        stop_seconds=stop_seconds,
        stop_hung=hung,
        load_sent=stats.sent,
        load_failed=stats.failed,
        load_unanswered=stats.errors,
        load_avg=(load_before, os.getloadavg()),
        log_errors=log_errors,
        rps=args.rps,
        scrape=args.scrape,
        growth=growth,
        ended=dict(ended),
        ended_examples=list(examples.values()),
    )


def warmup_of(seconds: float) -> float:
    """The start of a run left out of the memory slope: imports, caches and pools filling,
    SQLite's page cache growing with the first measurements. Two minutes, or a fifth of a
    shorter run."""
    return min(120.0, 0.2 * seconds)


def memory_growth(folder: Path, every: float, warmup_s: float, top: int = 12) -> list[str]:
    """The source lines whose live memory grew most from the first snapshot after warm-up
    to the last (tracemalloc runs only); empty when the daemon was not traced."""
    if every <= 0 or not folder.is_dir():
        return []
    snaps = sorted(folder.glob("*.snap"))
    first_index = math.ceil(warmup_s / every) - 2  # snapshot i is taken at (i + 2) * every
    if len(snaps) < 2 or first_index >= len(snaps) - 1:
        return []
    before = tracemalloc.Snapshot.load(str(snaps[max(0, first_index)]))
    after = tracemalloc.Snapshot.load(str(snaps[-1]))
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(keep), after.filter_traces(keep)
    diff = after.compare_to(before, "lineno")
    traced = [sum(t.size for t in snap.traces) / 2**20 for snap in (before, after)]
    out = [
        f"memory Python allocated since tracing began, live: {traced[0]:.1f} MB after warm-up "
        f"(snapshot {max(0, first_index) + 1} of {len(snaps)}), {traced[1]:.1f} MB at the end"
    ]
    for stat in diff[:top]:
        frame = stat.traceback[0]
        where = os.path.relpath(frame.filename, REPO_ROOT) if frame.filename else "?"
        if where.startswith(".."):
            where = "/".join(Path(frame.filename).parts[-3:])
        out.append(
            f"{where}:{frame.lineno}: {stat.size_diff / 1024:+.0f} KiB "
            f"({stat.count_diff:+d} blocks), {stat.size / 1024:.0f} KiB live"
        )
    return out


def reason_shape(reason: str) -> str:
    """A reason with its numbers blanked (``#``), so rollouts that ended alike count as one."""
    return re.sub(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", reason)


def count_error_lines(lines: Iterable[str]) -> int:
    """Log events at level error or above (JSON lines; other lines are not events)."""
    count = 0
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("level") in ("error", "critical"):
            count += 1
    return count


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checks:
    """The run's verdicts, and the numbers behind the memory one."""

    slope_mb_per_min: float
    slope_checked: bool
    warmup_s: float
    after: tuple[Sample, ...]  # the samples the slope is fitted on
    passed: dict[str, bool]

    @property
    def ok(self) -> bool:
        return all(self.passed.values())


def judge(result: RunResult, max_slope: float) -> Checks:
    """Pass or fail each claim of the soak; the memory slope is judged only on a run long
    enough after warm-up for a slope to mean something."""
    samples = result.samples
    end = samples[-1].t
    warmup = warmup_of(end)
    after = [s for s in samples if s.t >= warmup]
    slope = slope_per_minute([s.t for s in after], [s.rss_mb for s in after])
    checked = (end - warmup) / 60.0 >= MIN_CHECKED_MINUTES
    passed = {
        "memory": (slope < max_slope) if checked else True,
        "missed ticks": result.ticks.missed == 0,
        "tick errors": samples[-1].ticks_error == 0,
        "still progressing": result.phases == {"progressing": result.rollouts},
        "stops on SIGTERM": not result.stop_hung,
    }
    return Checks(slope, checked, warmup, tuple(after), passed)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{1000 * value:.0f}"


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else f"{1000 * value:g}"


def _quantiles(buckets: Sequence[tuple[float, float]], qs: Sequence[float]) -> str:
    """``estimate (bucket)`` per quantile, in ms, joined by slashes."""
    out = []
    for q in qs:
        estimate, lower, upper = histogram_quantile(q, buckets)
        out.append(f"{_ms(estimate)} ({1000 * lower:g}-{_bound(upper)})")
    return " / ".join(out)


def _mean_ms(later: Sample, earlier: Sample) -> str:
    count = later.buckets[-1][1] - earlier.buckets[-1][1] if later.buckets else 0.0
    if count <= 0:
        return "-"
    return f"{1000 * (later.duration_sum - earlier.duration_sum) / count:.0f}"


def _share(later: Sample, earlier: Sample) -> tuple[float, float]:
    """Daemon CPU in cores, and the machine's busy share, between two samples."""
    seconds = later.t - earlier.t
    daemon = (later.cpu_s - earlier.cpu_s) / seconds if seconds > 0 else math.nan
    total = later.machine_total_s - earlier.machine_total_s
    machine = (later.machine_busy_s - earlier.machine_busy_s) / total if total > 0 else math.nan
    return daemon, machine


def report(result: RunResult, checks: Checks, command: str, max_slope: float) -> str:
    """The results as Markdown: the summary, a row per minute and every RSS sample."""
    samples = result.samples
    first, last = samples[0], samples[-1]
    middle = min(samples, key=lambda s: abs(s.t - last.t / 2))
    warm = min((s for s in samples if s.t >= checks.warmup_s), key=lambda s: s.t)
    seconds = last.t - first.t
    daemon_cpu, machine_busy = _share(last, first)
    whole = bucket_delta(last.buckets, first.buckets)
    steady = bucket_delta(last.buckets, warm.buckets)
    slowest = histogram_max(whole)
    due_per_s = result.rollouts / result.interval
    errors = {k: v for k, v in last.errors.items() if v}
    loads = [s.load1 for s in samples]
    t = result.ticks
    verdict = "checked" if checks.slope_checked else "not checked: run too short"
    quantiles = (0.5, 0.9, 0.99)
    lines = [
        f"## Soak: {result.rollouts} rollouts on one `canary run` for {result.minutes:g} min",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}, shared with other work (see the "
        "load average and the machine's busy share below). Real Prometheus (scraping every "
        f"{result.scrape}), HAProxy, two simulated model versions under "
        f"{result.rps:g} rps through HAProxy; the daemon's own SQLite store; "
        f"interval {result.interval:g} s, so {due_per_s:.1f} ticks due per second; each tick "
        "reads 7 selectors (one combined query), reconciles the HAProxy weights and saves "
        "a measurement.",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| RSS at start / after warm-up ({checks.warmup_s / 60:.0f} min) / middle / end | "
        f"{first.rss_mb:.1f} / {warm.rss_mb:.1f} / {middle.rss_mb:.1f} / {last.rss_mb:.1f} MB |",
        f"| RSS slope after warm-up (least squares over {len(checks.after)} samples) | "
        f"{checks.slope_mb_per_min:+.3f} MB/min (limit {max_slope:g}, {verdict}) |",
        f"| RSS max | {max(s.rss_mb for s in samples):.1f} MB |",
        f"| ticks run / due (store) | {t.run} / {t.due} |",
        f"| ticks run per second (daemon) | {(last.ticks - first.ticks) / seconds:.2f} "
        f"(due {due_per_s:.2f}) |",
        f"| tick duration p50 / p90 / p99, whole run, ms (bucket) | "
        f"{_quantiles(whole, quantiles)} |",
        f"| tick duration p50 / p90 / p99, after warm-up, ms (bucket) | "
        f"{_quantiles(steady, quantiles)} |",
        f"| tick duration mean / max, whole run, ms | {_mean_ms(last, first)} / "
        f"in ({1000 * slowest[0]:g}-{_bound(slowest[1])}] |",
        f"| tick start delay after its due time p50 / p90 / p99 / max | {_ms(t.lag_p50_s)} / "
        f"{_ms(t.lag_p90_s)} / {_ms(t.lag_p99_s)} / {_ms(t.lag_max_s)} ms |",
        f"| gap between two ticks of a rollout p99 / max | {t.gap_p99_s:.2f} / "
        f"{t.max_gap_s:.2f} s |",
        f"| daemon launch to the first tick due / all {result.rollouts} scheduled within | "
        f"{t.first_due_s:.1f} s / {1000 * t.schedule_spread_s:.0f} ms |",
        f"| missed ticks (a rollout > {2 * result.interval:g} s without a tick) | {t.missed}"
        + (f" (longest gap: {t.worst})" if t.missed else "")
        + " |",
        f"| tick errors / failed metric reads | {last.ticks_error:.0f} / "
        f"{last.measurement_errors:.0f} |",
        f"| errors by kind | {', '.join(f'{k} {v:.0f}' for k, v in errors.items()) or 'none'} |",
        f"| error lines in the daemon's log | {result.log_errors} |",
        f"| daemon CPU | {100 * daemon_cpu:.0f} % of one core |",
        f"| machine busy (all processes, {os.cpu_count()} cores) | {100 * machine_busy:.0f} % |",
        f"| load average (1 min) at start / min / max / end | {result.load_avg[0][0]:.2f} / "
        f"{min(loads):.2f} / {max(loads):.2f} / {result.load_avg[1][0]:.2f} |",
        f"| daemon threads at end | {last.threads} |",
        f"| rollouts at end, by phase | "
        f"{', '.join(f'{k} {v}' for k, v in sorted(result.phases.items()))} |",
        f"| store size at end | {result.db_bytes / 1e6:.1f} MB for {result.measurements} "
        f"measurements ({result.db_bytes / max(1, result.measurements) / 1024:.1f} KB each) |",
        f"| SIGTERM to exit | {result.stop_seconds:.1f} s"
        + (" (had not exited: SIGABRT, then SIGKILL)" if result.stop_hung else "")
        + " |",
        f"| load: requests sent / answered 5xx (2 % by design) / unanswered | "
        f"{result.load_sent} / {result.load_failed} / {result.load_unanswered} |",
        *(
            ["", "Rollouts that ended (none should: the two versions behave alike):", ""]
            + [f"- {n} x {why}" for why, n in sorted(result.ended.items())]
            + ["", "For example:", ""]
            + [f"- {example}" for example in result.ended_examples]
            if result.ended
            else []
        ),
        "",
        "Checks: "
        + ", ".join(f"{name} {'pass' if ok else 'FAIL'}" for name, ok in checks.passed.items())
        + ".",
        "",
        "### Per minute",
        "",
        "| minute | RSS MB | ticks/s | tick p50 ms | tick p99 ms | tick errors | daemon CPU % "
        "| machine busy % | load 1m |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    per_minute = [samples[0]]
    for s in samples[1:]:
        if s.t - per_minute[-1].t >= 59.5 or s is samples[-1]:
            per_minute.append(s)
    for before, after in itertools.pairwise(per_minute):
        window = bucket_delta(after.buckets, before.buckets)
        span = after.t - before.t
        p50 = histogram_quantile(0.5, window)[0]
        p99 = histogram_quantile(0.99, window)[0]
        cpu, busy = _share(after, before)
        lines.append(
            f"| {after.t / 60:.1f} | {after.rss_mb:.1f} | {(after.ticks - before.ticks) / span:.2f}"
            f" | {_ms(p50)} | {_ms(p99)} | {after.ticks_error - before.ticks_error:.0f} "
            f"| {100 * cpu:.0f} | {100 * busy:.0f} | {after.load1:.2f} |"
        )
    lines += [
        "",
        "Tick durations come from the daemon's `canary_tick_duration_seconds` histogram: the "
        "figure is interpolated inside its bucket (as `histogram_quantile` does) and the "
        "bucket's bounds follow in brackets; the mean is exact (`_sum` / `_count`), the "
        "maximum is known only to its bucket. Tick start times, gaps and delays come from "
        "the measurements the daemon stored (one per tick, stamped when the tick reads its "
        "metrics, after it has reconciled the HAProxy weights); each rollout's due times "
        "count from the moment the daemon scheduled it (its `rollout.resumed` log event). "
        "Every rollout is resumed at the daemon's start, so all of them fall due together "
        "every interval: the start delay is the queue of one such burst.",
        "",
        *(
            [
                "### Where memory grew after warm-up (tracemalloc, top source lines)",
                "",
                *(f"- {line}" for line in result.growth),
                "",
            ]
            if result.growth
            else []
        ),
        "### RSS samples",
        "",
        "| s | RSS MB | threads |",
        "| --- | --- | --- |",
        *(f"| {s.t:.0f} | {s.rss_mb:.1f} | {s.threads} |" for s in samples),
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines) + "\n"


def recorded_args(argv: Sequence[str]) -> list[str]:
    """The arguments worth printing under the results: ``--output`` says where they went,
    not how they were measured, and a path of one machine means nothing on another."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--output", "--workdir"):
            skip = True
        elif not arg.startswith(("--output=", "--workdir=")):
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=15.0, help="analysis interval, s")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--rps", type=float, default=100.0, help="load through HAProxy")
    parser.add_argument("--scrape", default="5s", help="Prometheus scrape interval")
    parser.add_argument("--max-slope", type=float, default=1.0, help="MB/min after warm-up")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=60.0,
        help="seconds the daemon has to exit after SIGTERM (its own grace is 30 s)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="a new folder to run in and keep (the daemon's log and store, for a post-mortem)",
    )
    parser.add_argument(
        "--tracemalloc",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run the daemon under tracemalloc, a snapshot this often, and list where memory "
        "grew after warm-up (slows the daemon: for finding a leak, not for the timings)",
    )
    args = parser.parse_args(argv)
    if args.rollouts < 1 or args.minutes <= 0 or args.interval < 1 or args.sample <= 0:
        parser.error("--rollouts >= 1, --minutes > 0, --interval >= 1 and --sample > 0")
    log.configure("warning", "console")
    command = "python -m benchmarks.soak" + "".join(
        f" {a}" for a in recorded_args(argv if argv is not None else sys.argv[1:])
    )
    result = run(args)
    checks = judge(result, args.max_slope)
    text = report(result, checks, command, args.max_slope)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
