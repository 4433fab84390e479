"""How long the store and the notification outbox take on the paths a tick uses.

* ``save``: a rollout row, its transition and one notification in one transaction, which is
  what every phase change costs, rollbacks included;
* ``add_measurement``: one tick's snapshot (a replay-format line of about 0.9 KB: three
  metrics, four slices, 12 buckets) and its decision;
* ``get``: reading a rollout, the first thing every tick does;
* ``measurements``: reading back all 1920 ticks of an 8-hour rollout (15 s interval), which
  a restarted daemon does to rebuild its sequential tests;
* the outbox: the caller's time to record a rollback notification while the endpoint hangs
  (the worker is stuck in a request), and the time from recording a notification to its
  arrival at a healthy local endpoint.

Backends: a SQLite file (WAL, ``synchronous=NORMAL``) and, when it is installed, PostgreSQL
on loopback with durable commits (``fsync`` on, unlike the test cluster).

Run: ``python -m benchmarks.store_outbox`` (about a minute). Prints a table and saves it to
``benchmarks/results/store_outbox.md``.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from canary.core.lifecycle import Phase, Rollout, transition
from canary.log import configure
from canary.notify.base import Breach, Notification
from canary.notify.outbox import EnvChannels, Outbox
from canary.store.base import DecisionRecord, DeliveryStatus, Measurement, MeasurementOutcome
from canary.store.sql import SqlStore, sqlite_url
from tests.harness.postgres import PostgresUnavailableError, running_postgres
from tests.integration.notify.sink import HANG, Sink

RESULTS = Path(__file__).parent / "results" / "store_outbox.md"
SAVES = 300
TICKS = 1920  # 8 h at a 15 s interval
DELIVERIES = 100
HANG_TRIALS = 20

SNAPSHOT = {
    "t": 0.0,
    "canary_weight": 5,
    "metrics": {
        "errors": {
            "baseline": {"events": 12, "total": 9500},
            "canary": {"events": 3, "total": 480},
        },
        "accuracy": {
            "baseline": {
                "slices": {s: {"events": 900, "total": 1000} for s in ("a", "b", "c", "d")}
            },
            "canary": {"slices": {s: {"events": 45, "total": 50} for s in ("a", "b", "c", "d")}},
        },
        "latency": {
            "baseline": {
                "buckets": [
                    [le, 8000 + i * 100]
                    for i, le in enumerate(
                        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
                    )
                ]
                + [["+Inf", 9500]]
            },
            "canary": {
                "buckets": [
                    [le, 400 + i * 5]
                    for i, le in enumerate(
                        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
                    )
                ]
                + [["+Inf", 480]]
            },
        },
    },
}
BREACH = Breach("errors", 41.3, 0.021, (0.016, 0.027), "b", "group", 20.0, 0.95, limit=0.015)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, what: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"| {name} | {what} | {len(ms)} | {statistics.median(ms):.2f} | "
        f"{quantile(ms, 0.95):.2f} | {max(ms):.2f} |"
    )


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def notification(rollout: Rollout, sequence: int, event: str = "advanced") -> Notification:
    return Notification(
        event=event,
        rollout_id=rollout.id,
        model=rollout.model,
        version=rollout.version,
        champion_version=rollout.champion_version,
        step=rollout.step,
        weight=rollout.canary_weight,
        reason="bench",
        at=time.time(),
        sequence=sequence,
        breaches=(BREACH,) if event == "rolled_back" else (),
    )


def bench_store(name: str, store: SqlStore) -> list[str]:
    rollout = Rollout(
        id="bench-1",
        model="bench",
        version="2",
        champion_version="1",
        phase=Phase.PROGRESSING,
        step=1,
        canary_weight=1.0,
    )
    revision = store.save(rollout, expected_revision=0)
    saves = []
    for i in range(SAVES):
        moved, record = transition(
            rollout,
            Phase.PROGRESSING,
            reason="next step",
            at=time.time(),
            step=rollout.step + 1,
            canary_weight=float(1 + i % 99),
        )
        entries = Outbox.entries(notification(moved, revision + 1), ["webhook:BENCH"])
        start = time.perf_counter()
        store.save(moved, expected_revision=revision, transition=record, notifications=entries)
        saves.append(time.perf_counter() - start)
        rollout, revision = moved, revision + 1
    ticks = []
    for tick in range(1, TICKS + 1):
        measurement = Measurement(
            "bench-1",
            tick,
            15.0 * tick,
            MeasurementOutcome.OK,
            {**SNAPSHOT, "t": 15.0 * tick},
            {"verdict": "pass", "e": 1.0},
            at=time.time(),
        )
        decision = DecisionRecord("bench-1", tick, time.time(), "hold", ("not enough data",))
        start = time.perf_counter()
        store.add_measurement(measurement, decision)
        ticks.append(time.perf_counter() - start)
    gets = [timed(lambda: store.get("bench-1")) for _ in range(SAVES)]
    replays = []
    for _ in range(5):
        start = time.perf_counter()
        read = store.measurements("bench-1")
        replays.append(time.perf_counter() - start)
        assert len(read) == TICKS
    return [
        row(name, "save: rollout + transition + notification", saves),
        row(name, "add_measurement (0.9 KB snapshot + decision)", ticks),
        row(name, "get rollout", gets),
        row(name, f"measurements(): read {TICKS} ticks", replays),
    ]


def bench_outbox(store: SqlStore, sink: Sink) -> list[str]:
    channels = EnvChannels(environ={"BENCH": sink.url("/hook/secret")}, timeout=5.0)
    outbox = Outbox(store, channels, poll_interval=1.0, base_delay=0.05, max_delay=0.2).start()
    rollout = Rollout(
        id="bench-2",
        model="bench2",
        version="2",
        champion_version="1",
        phase=Phase.PROGRESSING,
        step=1,
        canary_weight=5.0,
    )
    revision = store.save(rollout, expected_revision=0)
    try:
        # Delivery latency: record, then wait for the sink to see it.
        latencies = []
        for i in range(DELIVERIES):
            before = len(sink.requests)
            start = time.perf_counter()
            outbox.record(notification(rollout, 10_000 + i), ["webhook:BENCH"])
            while len(sink.requests) == before:
                time.sleep(0.0005)
            latencies.append(time.perf_counter() - start)
        # The rollback path while the worker is stuck on a hanging endpoint.
        callers = []
        for i in range(HANG_TRIALS):
            sink.release.clear()
            sink.hanging.clear()
            sink.answer(HANG)
            outbox.record(notification(rollout, 20_000 + i), ["webhook:BENCH"])
            assert sink.hanging.wait(10)
            stopping, first = transition(
                rollout, Phase.ROLLING_BACK, reason="bench", at=time.time()
            )
            done, second = transition(stopping, Phase.ROLLED_BACK, reason="bench", at=time.time())
            entries = Outbox.entries(
                notification(done, revision + 2, "rolled_back"), ["webhook:BENCH"]
            )

            start = time.perf_counter()
            store.save(stopping, expected_revision=revision, transition=first)
            store.save(
                done, expected_revision=revision + 1, transition=second, notifications=entries
            )
            outbox.wake()
            callers.append(time.perf_counter() - start)
            sink.release.set()
            # Reset for the next trial: a fresh active rollout of another model.
            rollout = Rollout(
                id=f"bench-h{i}",
                model=f"bench-h{i}",
                version="2",
                champion_version="1",
                phase=Phase.PROGRESSING,
                step=1,
                canary_weight=5.0,
            )
            revision = store.save(rollout, expected_revision=0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and store.notifications(status=DeliveryStatus.PENDING):
            time.sleep(0.05)
    finally:
        outbox.stop()
        channels.close()
    return [
        row("SQLite", "outbox: record → arrival at a local endpoint", latencies),
        row("SQLite", "rollback path (2 saves + wake) while the endpoint hangs", callers),
    ]


@contextmanager
def sqlite_store() -> Iterator[SqlStore]:
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as folder:
        store = SqlStore(sqlite_url(folder))
        try:
            yield store
        finally:
            store.close()


def main() -> None:
    configure("warning", "console")
    rows: list[str] = []
    with sqlite_store() as store:
        rows += bench_store("SQLite", store)
    notes = []
    try:
        with running_postgres(durable=True) as server:
            store = SqlStore(server.url())
            try:
                rows += bench_store("PostgreSQL", store)
            finally:
                store.close()
    except PostgresUnavailableError as exc:
        notes.append(f"- PostgreSQL not measured: {exc}.")
    sink = Sink().start()
    try:
        with sqlite_store() as store:
            rows += bench_outbox(store, sink)
    finally:
        sink.stop()

    text = "\n".join(
        [
            "# Store and outbox timings",
            "",
            f"Machine: {platform.machine()}, Python {platform.python_version()}, "
            f"{platform.system()}; database files on the local disk, servers on loopback. "
            "Produced by `python -m benchmarks.store_outbox`.",
            "",
            "| backend | operation | n | median ms | p95 ms | max ms |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Notes:",
            "",
            "- SQLite: WAL with synchronous=NORMAL (a commit is durable once the WAL is "
            "checkpointed; power loss may lose the last commits, which the next tick redoes). "
            "Write transactions take the lock first (BEGIN IMMEDIATE).",
            "- PostgreSQL: default durability (fsync on, synchronous_commit on), one server on "
            "the same host.",
            "- The rollback-path row is the whole caller side of a rollback while the outbox "
            "worker is held by an endpoint that does not answer: it does not wait for the "
            "endpoint, only for its own two local commits.",
            *notes,
        ]
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
