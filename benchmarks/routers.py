"""How long each router takes to apply a weight change on the real proxy.

A tick applies the weights of the current step; the time this takes bounds how quickly a
rollback reaches the proxy. Each router applies 100 different weight changes to a real
proxy (two real backends behind it, started by the test harness on loopback ports) and the
time of each ``apply`` is recorded, from the call to the moment the router returns, which is
when the proxy serves the new weights:

* HAProxy: the runtime API has answered every command (state read + one or two ``set weight``);
* nginx: ``nginx -t`` passed, ``nginx -s reload`` sent, and the old workers retired;
* Envoy: the RDS file was moved into place and ``/config_dump`` shows the new weights (with
  the admin address), or just the move (files only).

A repeat of unchanged weights (what every tick does between steps) is timed too.

Run: ``python -m benchmarks.routers`` (about 30 s). Prints a table and saves it to
``benchmarks/results/routers.md``.
"""

from __future__ import annotations

import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from canary.log import configure
from canary.traffic.base import Address, Router, Weights
from canary.traffic.envoy import EnvoyRouter
from canary.traffic.haproxy import HAProxyRouter
from canary.traffic.nginx import NginxRouter
from tests.harness.backends import start_name_backend
from tests.harness.envoy import start_envoy
from tests.harness.haproxy import start_haproxy
from tests.harness.nginx import start_nginx
from tests.harness.proc import ManagedProcess

RESULTS = Path(__file__).parent / "results" / "routers.md"
CHANGES = 100
REPEATS = 100


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_router(router: Router) -> tuple[list[float], list[float]]:
    """Seconds per apply over CHANGES distinct changes, then over REPEATS unchanged ones."""
    router.apply(Weights(canary=0))
    changes = []
    for i in range(CHANGES):
        weights = Weights(canary=1 + (i * 37) % 99)  # every step differs from the one before
        start = time.perf_counter()
        router.apply(weights)
        changes.append(time.perf_counter() - start)
    repeats = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        router.apply(weights)
        repeats.append(time.perf_counter() - start)
    assert router.read() == weights
    return changes, repeats


@contextmanager
def proxies(workdir: Path) -> Iterator[list[tuple[str, str, Callable[[], Router]]]]:
    """Start two backends and the three proxies; yield (name, note, router factory) rows."""
    processes: list[ManagedProcess] = []
    # A short folder of its own for HAProxy: unix socket paths are limited to 107 bytes.
    hap_dir = Path(tempfile.mkdtemp(prefix="canary-haproxy-"))
    try:
        blue, process = start_name_backend("blue", workdir)
        processes.append(process)
        green, process = start_name_backend("green", workdir)
        processes.append(process)
        canary = Address.parse(green.address)

        haproxy = start_haproxy(hap_dir, {"champion": blue.address})
        processes.append(haproxy.process)
        (workdir / "nginx").mkdir()
        nginx = start_nginx(workdir / "nginx", blue.address)
        processes.append(nginx.process)
        envoy = start_envoy(workdir / "envoy", blue.address)
        processes.append(envoy.process)

        def prepared(router: Router) -> Router:
            router.set_backend("canary", canary)
            return router

        yield [
            (
                "HAProxy (TCP runtime API)",
                "API replied",
                lambda: prepared(HAProxyRouter(haproxy.runtime_tcp, haproxy.backend)),
            ),
            (
                "HAProxy (unix socket)",
                "API replied",
                lambda: prepared(HAProxyRouter(haproxy.runtime_unix, haproxy.backend)),
            ),
            (
                "nginx",
                "-t, reload, old workers retired",
                lambda: prepared(
                    NginxRouter(
                        nginx.upstream,
                        nginx.include_file,
                        nginx=nginx.binary,
                        conf=str(nginx.conf),
                        prefix=str(nginx.prefix),
                    )
                ),
            ),
            (
                "Envoy (admin confirms)",
                "/config_dump shows the new weights",
                lambda: prepared(
                    EnvoyRouter(envoy.config_dir, envoy.route_config, admin=envoy.admin)
                ),
            ),
            (
                "Envoy (files only)",
                "file moved into place",
                lambda: prepared(EnvoyRouter(envoy.config_dir, envoy.route_config)),
            ),
        ]
    finally:
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(hap_dir, ignore_errors=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def main() -> None:
    configure(level="warning")
    rows = []
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp, proxies(Path(tmp)) as setups:
        for name, note, build in setups:
            changes, repeats = time_router(build())
            rows.append(
                [
                    name,
                    ms(statistics.median(changes)),
                    ms(quantile(changes, 0.95)),
                    ms(max(changes)),
                    ms(statistics.median(repeats)),
                    note,
                ]
            )
            print(f"{name}: median {rows[-1][1]} ms", flush=True)
    header = [
        "router",
        "change median ms",
        "change p95 ms",
        "change max ms",
        "unchanged median ms",
        "returns when",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    report = "\n".join(
        [
            "# Time to apply a weight change",
            "",
            f"Machine: {platform.machine()}, Python {platform.python_version()}, "
            f"{platform.system()}; proxies and backends on the same host (loopback), no traffic.",
            f"{CHANGES} distinct weight changes per router, then {REPEATS} applies of unchanged "
            "weights (what a tick between steps does). Produced by `python -m benchmarks.routers`.",
            "",
            *lines,
            "",
            "Notes:",
            "",
            "- HAProxy: one connection per runtime API command; a change is a state read and "
            "one or two `set weight`; unchanged weights cost the state read only.",
            "- nginx: most of the time is nginx itself: on reload its master starts new workers, "
            "waits 100 ms, then retires the old ones, which keep serving the old weights "
            "until then. The router waits for that (Linux /proc), so `apply` returns when new "
            "requests get the new weights. Unchanged weights touch nothing (the router "
            "remembers what it last reloaded).",
            "- Envoy: writing and fsyncing the file, then polling the admin API every 5 ms "
            "until the live route has the new weights. Unchanged weights cost one "
            "`/config_dump` (with admin) or one file read.",
            "",
        ]
    )
    print()
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)


if __name__ == "__main__":
    main()
