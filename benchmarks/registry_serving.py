"""What a registry poll, an outcome write and a model server start cost on this machine.

The watcher polls MLflow on every tick of every idle policy, so its cost per poll (and how
it grows with the number of versions of a model) decides how many policies one controller
can watch at a 15 s interval. The fail-fast numbers show how long a tick is blocked when
MLflow is down or hung. The serving numbers are the time from "start this version" to
"healthy" for the simulated model server, and to stop it.

Run: ``python -m benchmarks.registry_serving`` (about two minutes: it starts an MLflow
server and registers a few hundred versions). Prints tables and saves them to
``benchmarks/results/registry_serving.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from canary.core.policy import PortRange, Serving
from canary.errors import RegistryError
from canary.log import configure as configure_logging
from canary.registry.base import Outcome, VersionStatus
from canary.registry.mlflow import MlflowRegistry
from canary.registry.watcher import watch
from canary.serving.process import ProcessServing
from tests.harness.mlflow_server import MlflowServer, registry_policy, unique_model_name
from tests.harness.proc import ManagedProcess, free_port, http_ok

RESULTS = Path(__file__).resolve().parent / "results" / "registry_serving.md"
REPO_ROOT = Path(__file__).resolve().parents[1]
GATE = {"accuracy": {"min": 0.8, "max_drop_vs_champion": 0.02}, "dp_difference": {"max": 0.1}}


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and max wall time of ``call`` in milliseconds."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def start_mlflow(workdir: Path) -> MlflowServer:
    port = free_port()
    binary = str(Path(sys.executable).parent / "mlflow")
    process = ManagedProcess(
        "mlflow",
        [
            binary,
            "server",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination",
            str(workdir / "art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        workdir,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    ).start()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    process.wait_ready(lambda: http_ok(f"{url}/health"), timeout=180)
    print(f"mlflow server ready in {time.monotonic() - started:.1f}s")
    return MlflowServer(url=url, port=port, workdir=workdir, process=process)


def registry_table(server: MlflowServer, sizes: list[int], repeat: int) -> list[str]:
    registry = MlflowRegistry(server.url, timeout=10)
    rows = [
        "| versions | candidates, tag trigger | candidates, new_versions | watch (gate, admit) "
        "| details (run + datasets) | record promote | record again (no-op) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in sizes:
        rows.append(measure_model(server, registry, size, repeat))
        print(rows[-1], flush=True)
    return rows


def measure_model(server: MlflowServer, registry: MlflowRegistry, size: int, repeat: int) -> str:
    """One table row: a fresh model with ``size`` versions, the newest waiting."""
    good = {"accuracy": 0.9, "dp_difference": 0.05}
    model = unique_model_name("bench")
    server.register_version(model, good, aliases=["champion"])
    for _ in range(size - 1):
        server.register_version(model, good, tags={"ready": "true"})
    by_tag = registry_policy(model, {"tag": {"key": "ready", "value": "true"}}, GATE)
    newer = registry_policy(model, {"new_versions": True}, GATE)
    cand_tag = timed(lambda: registry.candidates(by_tag), repeat)
    cand_new = timed(lambda: registry.candidates(newer), repeat)
    watched = timed(lambda: watch(registry, newer), repeat)
    details = timed(lambda: registry.details(model, "1"), repeat)
    outcome = Outcome(VersionStatus.PROMOTED, "bench", "bench-1")
    first = timed(lambda: registry.record(newer, str(size), outcome), 1)
    again = timed(lambda: registry.record(newer, str(size), outcome), repeat)
    return (
        f"| {size} | {cand_tag[0]:.0f} ms | {cand_new[0]:.0f} ms | {watched[0]:.0f} ms "
        f"| {details[0]:.0f} ms | {first[0]:.0f} ms | {again[0]:.0f} ms |"
    )


def fail_fast_table() -> list[str]:
    rows = ["| MLflow is | timeout setting | time to RegistryError |", "| --- | ---: | ---: |"]
    policy = registry_policy("bench", {"alias": "challenger"})

    def attempt(uri: str, timeout: float) -> float:
        registry = MlflowRegistry(uri, timeout=timeout)
        started = time.perf_counter()
        try:
            registry.candidates(policy)
        except RegistryError:
            return time.perf_counter() - started
        raise AssertionError("expected RegistryError")

    rows.append(
        f"| stopped (refused) | 5 s | {attempt(f'http://127.0.0.1:{free_port()}', 5):.3f} s |"
    )
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        for timeout in (1, 5):
            rows.append(
                f"| hung (accepts, never answers) | {timeout} s | {attempt(uri, timeout):.3f} s |"
            )
    for row in rows[2:]:
        print(row)
    return rows


def serving_table(workdir: Path, repeat: int) -> list[str]:
    first = free_port()
    serving = ProcessServing(
        Serving(
            address="127.0.0.1:{port}",
            start=[
                sys.executable,
                "-m",
                "canary.sim.model_server",
                "--port",
                "{port}",
                "--model",
                "{model}",
                "--version",
                "{version}",
            ],
            health="http://{address}/health",
            ports=PortRange(first=first, last=min(first + 100, 65535)),
            ready_timeout=30,
        ),
        workdir,
        env={"PYTHONPATH": str(REPO_ROOT)},
    )
    starts, again, stops = [], [], []
    for n in range(repeat):
        version = str(n + 1)
        t0 = time.perf_counter()
        serving.start("bench", version)
        t1 = time.perf_counter()
        serving.start("bench", version)
        t2 = time.perf_counter()
        serving.stop("bench", version)
        t3 = time.perf_counter()
        starts.append((t1 - t0) * 1000)
        again.append((t2 - t1) * 1000)
        stops.append((t3 - t2) * 1000)
    rows = [
        "| action (simulated model server) | median | max |",
        "| --- | ---: | ---: |",
        f"| start to healthy | {statistics.median(starts):.0f} ms | {max(starts):.0f} ms |",
        f"| start again (already healthy) | {statistics.median(again):.1f} ms "
        f"| {max(again):.1f} ms |",
        f"| stop (SIGTERM, process group) | {statistics.median(stops):.0f} ms "
        f"| {max(stops):.0f} ms |",
    ]
    for row in rows[2:]:
        print(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200", help="versions per model")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    configure_logging(level="warning")
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        server = start_mlflow(Path(tmp) / "mlflow")
        try:
            registry_rows = registry_table(server, sizes, args.repeat)
        finally:
            server.process.stop()
        fail_rows = fail_fast_table()
        serving_rows = serving_table(Path(tmp) / "serving", args.repeat)
    header = [
        "# Registry and serving costs",
        "",
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores; MLflow server with SQLite on loopback, "
        f"median of {args.repeat} runs.",
        "",
        "## One poll of the registry, by versions of the model",
        "",
    ]
    text = "\n".join(
        [
            *header,
            *registry_rows,
            "",
            "## MLflow down: time until a tick gets RegistryError",
            "",
            *fail_rows,
            "",
            "## Serving a version",
            "",
            *serving_rows,
            "",
        ]
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"\nsaved {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
