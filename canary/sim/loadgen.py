"""A steady stream of prediction requests, with a chosen mix of groups.

A canary is judged on live traffic, so tests, benchmarks and the demo need traffic that
arrives at a known rate with a known share per group (the fairness slices). Request ``i`` is
due at ``start + i / rps`` whichever worker sends it, so the rate does not drift with
latency; a few workers keep it steady when some requests are slow. When the target falls
more than a second behind (a stalled proxy), the missed slots are skipped and counted
rather than fired in a burst.

As a library: ``with LoadGenerator(url, rps=100, groups={"a": 1}) as gen: ...`` or
``gen.start()`` / ``gen.stop()``; ``gen.wait_for(n)`` waits for n answered requests.
As a command: ``python -m canary.sim.loadgen --url URL --rps 100 --groups a=0.5,b=0.5
--duration 60`` prints a JSON summary.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from canary.sim.config import parse_group_values

MAX_LAG_S = 1.0
MAX_LATENCIES = 200_000  # client-side latencies kept for percentiles


@dataclass
class LoadStats:
    """Counts so far. ``ok`` is 2xx, ``failed`` any other status, ``errors`` no answer."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0  # until the last answer came back
    window_s: float = 0.0  # while requests were being sent (excludes the final drain)
    by_status: Counter[int] = field(default_factory=Counter)
    by_group: Counter[str] = field(default_factory=Counter)
    by_version: Counter[str] = field(default_factory=Counter)  # X-Model-Version answers
    latencies_s: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return self.ok + self.failed

    def latency_quantile(self, q: float) -> float | None:
        """Client-side latency quantile (nearest rank), or None before any answer."""
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        return ordered[index]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest (no raw latencies)."""
        quantiles = {f"p{round(q * 100)}": self.latency_quantile(q) for q in (0.5, 0.9, 0.99)}
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed_s, 3),
            "window_s": round(self.window_s, 3),
            "achieved_rps": round(self.sent / self.window_s, 2) if self.window_s else 0.0,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_group": dict(sorted(self.by_group.items())),
            "by_version": dict(sorted(self.by_version.items())),
            "latency_s": {k: None if v is None else round(v, 6) for k, v in quantiles.items()},
        }


def invocations_url(url: str, *, allow_remote: bool = False) -> str:
    """The URL to POST to: ``/invocations`` when ``url`` has no path.

    Only loopback hosts unless ``allow_remote``: a load generator pointed at the wrong
    address by a typo is a small denial of service.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {url!r}: need http(s)://host:port[/path]")
    if not allow_remote and not _is_loopback(parts.hostname):
        raise ValueError(f"refusing non-loopback host {parts.hostname!r} (allow_remote)")
    path = parts.path if parts.path not in ("", "/") else "/invocations"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoadGenerator:
    """Sends POSTs at ``rps`` (None: as fast as ``workers`` allow) until stopped.

    ``groups`` maps group name to weight (normalised); ``batch`` records per request, sent
    as ``dataframe_records`` when above 1; ``max_requests`` stops after that many sent.
    """

    def __init__(
        self,
        url: str,
        *,
        rps: float | None = 50.0,
        groups: Mapping[str, float] | None = None,
        workers: int = 4,
        batch: int = 1,
        max_requests: int | None = None,
        seed: int | None = None,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        allow_remote: bool = False,
    ) -> None:
        if rps is not None and not rps > 0:
            raise ValueError("rps must be > 0 (or None for unpaced)")
        if workers < 1 or batch < 1:
            raise ValueError("workers and batch must be >= 1")
        weights = dict(groups) if groups else {"a": 1.0}
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("group weights must be >= 0 with a positive sum")
        self.url = invocations_url(url, allow_remote=allow_remote)
        self.rps = rps
        self.workers = workers
        self.batch = batch
        self.max_requests = max_requests
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self._names = list(weights)
        self._weights = [weights[n] for n in self._names]
        self._rng = random.Random(seed)  # noqa: S311 - traffic mix, not security
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stats = LoadStats()
        self._t0 = 0.0
        self._slot = 0
        self._reserved = 0
        self._running = 0

    # -- control ---------------------------------------------------------------------------

    def start(self) -> LoadGenerator:
        if self._threads:
            raise RuntimeError("a LoadGenerator starts once")
        self._t0 = time.monotonic()
        self._running = self.workers
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"loadgen-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> LoadStats:
        """Stop sending; wait for requests in flight; return the final counts."""
        self._stop.set()
        with self._lock:
            self._end_window()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.stats()

    def run(self, duration_s: float) -> LoadStats:
        """Send for ``duration_s`` seconds (or until ``max_requests``) and return the counts."""
        self.start()
        self.wait_done(duration_s)  # early at max_requests or after request_stop()
        return self.stop()

    def request_stop(self) -> None:
        """Ask the workers to stop without waiting (safe from a signal handler)."""
        self._stop.set()

    def wait_for(self, answered: int, timeout: float) -> LoadStats:
        """Block until ``answered`` requests got an HTTP answer (or every worker ended)."""
        with self._progress:
            self._progress.wait_for(
                lambda: self._stats.answered >= answered or self._running == 0, timeout
            )
        return self.stats()

    def wait_done(self, timeout: float) -> LoadStats:
        """Block until every worker ended (after ``max_requests``, or ``stop``)."""
        with self._progress:
            self._progress.wait_for(lambda: self._running == 0, timeout)
        return self.stats()

    def stats(self) -> LoadStats:
        """A copy of the counts so far."""
        with self._lock:
            s = self._stats
            elapsed = time.monotonic() - self._t0 if self._t0 else 0.0
            return LoadStats(
                sent=s.sent,
                ok=s.ok,
                failed=s.failed,
                errors=s.errors,
                skipped=s.skipped,
                elapsed_s=s.elapsed_s or elapsed,
                window_s=s.window_s or elapsed,
                by_status=Counter(s.by_status),
                by_group=Counter(s.by_group),
                by_version=Counter(s.by_version),
                latencies_s=list(s.latencies_s),
            )

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- workers ---------------------------------------------------------------------------

    def _next_due(self) -> tuple[float, list[str]] | None:
        """Reserve the next request: when it is due and its groups; None when done."""
        with self._lock:
            if self.max_requests is not None and self._reserved >= self.max_requests:
                return None
            now = time.monotonic()
            due = now
            if self.rps is not None:
                due = self._t0 + self._slot / self.rps
                if due < now - MAX_LAG_S:
                    behind = int((now - due) * self.rps)
                    self._slot += behind
                    self._stats.skipped += behind
                    due = self._t0 + self._slot / self.rps
                self._slot += 1
            self._reserved += 1
            groups = self._rng.choices(self._names, self._weights, k=self.batch)
            return due, groups

    def _end_window(self) -> None:
        """Close the sending window once: at stop, or when the last worker ends."""
        if not self._stats.window_s and self._t0:
            self._stats.window_s = time.monotonic() - self._t0

    def _body(self, groups: list[str]) -> dict[str, Any]:
        if self.batch == 1:
            return {"group": groups[0]}
        return {"dataframe_records": [{"group": g} for g in groups]}

    def _work(self) -> None:
        try:
            with httpx.Client(timeout=self.timeout_s, headers=self.headers) as client:
                while not self._stop.is_set():
                    job = self._next_due()
                    if job is None:
                        return
                    due, groups = job
                    wait = due - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        return
                    self._send(client, groups)
        finally:
            with self._progress:
                self._running -= 1
                if self._running == 0:
                    self._end_window()
                    self._stats.elapsed_s = time.monotonic() - self._t0
                self._progress.notify_all()

    def _send(self, client: httpx.Client, groups: list[str]) -> None:
        started = time.perf_counter()
        status: int | None = None
        version: str | None = None
        try:
            response = client.post(self.url, json=self._body(groups))
            status = response.status_code
            version = response.headers.get("X-Model-Version")
        except httpx.HTTPError:
            status = None
        latency = time.perf_counter() - started
        with self._progress:
            s = self._stats
            s.sent += 1
            s.by_group.update(groups)
            if status is None:
                s.errors += 1
            else:
                s.by_status[status] += 1
                if 200 <= status < 300:
                    s.ok += 1
                else:
                    s.failed += 1
                if version is not None:
                    s.by_version[version] += 1
                if len(s.latencies_s) < MAX_LATENCIES:
                    s.latencies_s.append(latency)
            self._progress.notify_all()


def _parse_cli(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m canary.sim.loadgen",
        description="Send prediction requests at a steady rate; print a JSON summary.",
    )
    parser.add_argument("--url", required=True, help="endpoint to POST to (no path: /invocations)")
    parser.add_argument(
        "--rps",
        type=float,
        default=50.0,
        help="requests per second; 0 sends as fast as the workers can",
    )
    parser.add_argument("--groups", default="a=1", help="group mix, e.g. a=0.5,b=0.3,c=0.2")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after N requests")
    parser.add_argument("--workers", type=int, default=4, help="concurrent connections")
    parser.add_argument("--batch", type=int, default=1, help="records per request")
    parser.add_argument("--seed", type=int, default=None, help="seed of the group mix")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra request header (repeatable)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a host that is not loopback"
    )
    ns = parser.parse_args(argv)
    try:
        ns.group_weights = parse_group_values(ns.groups, probabilities=False)
    except ValueError as exc:
        parser.error(f"--groups: {exc}")
    headers: dict[str, str] = {}
    for item in ns.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            parser.error(f"--header {item!r}: expected NAME:VALUE")
        headers[name.strip()] = value.strip()
    ns.headers = headers
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parse_cli(argv)
    try:
        gen = LoadGenerator(
            ns.url,
            rps=ns.rps if ns.rps > 0 else None,
            groups=ns.group_weights,
            workers=ns.workers,
            batch=ns.batch,
            max_requests=ns.max_requests,
            seed=ns.seed,
            timeout_s=ns.timeout,
            headers=ns.headers,
            allow_remote=ns.allow_remote,
        )
    except ValueError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        gen.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stats = gen.run(ns.duration)
    print(json.dumps(stats.summary()))
    return 0 if stats.sent and not stats.errors else 1


if __name__ == "__main__":
    sys.exit(main())
