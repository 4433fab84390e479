"""How much traffic the simulated model server and the load generator sustain on this machine.

End-to-end tests and the demo size their traffic (requests per second, workers) from these
numbers: a canary step at 5 % of 200 rps sees 10 requests a second, so the harness must
deliver 200 rps steadily while a proxy and Prometheus share the same cores.

Run: ``python -m benchmarks.model_server_load`` (about a minute). Prints three tables and
saves them to ``benchmarks/results/model_server_load.md``.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

from canary.sim.labels import LabelQueue, PendingLabel
from canary.sim.loadgen import LoadGenerator, LoadStats
from tests.harness.model_server import ModelServerFactory

RESULTS = Path(__file__).parent / "results" / "model_server_load.md"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [row(header), row(["---"] * len(header)), *(row(r) for r in rows)]
    return "\n".join(lines)


def unpaced(url: str) -> str:
    """Closed loop: each worker sends as soon as its previous answer arrives."""
    rows = []
    for workers, batch in [(1, 1), (4, 1), (16, 1), (4, 20)]:
        stats = LoadGenerator(
            url, rps=None, workers=workers, batch=batch, max_requests=3000, seed=1
        ).run(60)
        rows.append(
            [
                str(workers),
                str(batch),
                f"{stats.sent / stats.window_s:.0f}",
                f"{stats.sent * batch / stats.window_s:.0f}",
                ms(stats.latency_quantile(0.5)),
                ms(stats.latency_quantile(0.99)),
                str(stats.failed + stats.errors),
            ]
        )
    return table(
        ["workers", "records/request", "requests/s", "predictions/s", "p50 ms", "p99 ms", "failed"],
        rows,
    )


def paced(url: str, slow_url: str) -> str:
    """Open loop at a target rate: does the achieved rate hold, also with a slow server?"""
    rows = []
    for target_url, what, rps, workers in [
        (url, "2 ms", 100.0, 4),
        (url, "2 ms", 400.0, 4),
        (url, "2 ms", 800.0, 8),
        (slow_url, "50 ms + 5 % 500 ms", 100.0, 4),
        (slow_url, "50 ms + 5 % 500 ms", 100.0, 16),
    ]:
        stats: LoadStats = LoadGenerator(target_url, rps=rps, workers=workers, seed=2).run(5.0)
        rows.append(
            [
                what,
                f"{rps:.0f}",
                str(workers),
                f"{stats.sent / stats.window_s:.1f}",
                str(stats.skipped),
                ms(stats.latency_quantile(0.5)),
                ms(stats.latency_quantile(0.99)),
            ]
        )
    return table(
        ["server latency", "target rps", "workers", "achieved rps", "skipped", "p50 ms", "p99 ms"],
        rows,
    )


class ManualClock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def label_queue() -> str:
    """The pending-label heap alone: cost per label at the sizes a long delay builds up."""
    rows = []
    for pending in (10_000, 100_000, 1_000_000):
        clock = ManualClock()
        queue = LabelQueue(clock)
        item = PendingLabel(group="a", correct=True)
        started = time.perf_counter()
        for n in range(pending):
            queue.put(float(n % 600), item)
        put_s = time.perf_counter() - started
        clock.now = 1e9
        started = time.perf_counter()
        popped = len(queue.pop_due())
        pop_s = time.perf_counter() - started
        assert popped == pending
        rows.append(
            [
                f"{pending:,}",
                f"{put_s / pending * 1e6:.2f}",
                f"{pop_s / pending * 1e6:.2f}",
            ]
        )
    return table(["labels pending", "put µs/label", "pop µs/label"], rows)


def main() -> None:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        factory = ModelServerFactory(Path(tmp))
        try:
            fast = factory(version="1", latency_ms=2.0, jitter_ms=1.0, seed=1)
            slow = factory(version="2", latency_ms=50.0, jitter_ms=0.0, tail_prob=0.05,
                           tail_ms=500.0, seed=2)  # fmt: skip
            sections = [
                ("Unpaced (closed loop), 3000 requests, 2 ms server latency", unpaced(fast.url)),
                ("Paced (open loop), 5 s each", paced(fast.url, slow.url)),
            ]
        finally:
            factory.stop_all()
    sections.append(("Label-delay queue (in process)", label_queue()))
    header = (
        f"# Simulated model server and load generator\n\n"
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()}, {os.cpu_count()} CPUs; client and server on the same host "
        f"(loopback). Load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f} "
        f"(other work on the machine skews the rows that need the most CPU).\n"
    )
    text = header + "".join(f"\n## {title}\n\n{body}\n" for title, body in sections)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
