"""Live traffic for router tests: threads sending requests through a proxy, non-stop.

Each thread keeps one HTTP/1.1 connection alive, like a real client, and records for every
request when it started, which backend answered (the ``X-Backend`` header of
``tests.harness.backends``) or what went wrong. Tests change weights while this runs, then
read the split of the requests that started after the change.

A request on a *reused* connection that the proxy closed while it was idle (nginx's old
workers do this on reload) is sent again once on a new connection, as HTTP clients do for
idempotent requests (RFC 9112, 9.3.1); the retry is counted. Any other failure, or a retry
that fails too, is an error.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit


@dataclass
class Sample:
    started: float
    backend: str | None
    error: str | None = None


@dataclass
class Load:
    url: str
    threads: int = 6
    samples: list[Sample] = field(default_factory=list)
    retries: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"load-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=10)

    @property
    def errors(self) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.error is not None]

    @property
    def total(self) -> int:
        with self._lock:
            return len(self.samples)

    def split_after(
        self, since: float, count: int, *, skip: int = 0, timeout: float = 60.0
    ) -> Counter[str]:
        """Backends of ``count`` requests started after ``since``, ignoring the first ``skip``.

        Waits (polling) until enough requests have completed. ``skip`` leaves out requests
        that may have been in flight on connections opened before the change.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                after = sorted(
                    (s for s in self.samples if s.started >= since and s.backend is not None),
                    key=lambda s: s.started,
                )
            if len(after) >= skip + count:
                return Counter(s.backend for s in after[skip : skip + count] if s.backend)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(after)} requests in {timeout}s")
            time.sleep(0.01)

    def _run(self) -> None:
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path or "/"
        conn: http.client.HTTPConnection | None = None
        reused = False
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=10)
                reused = False
            started = time.monotonic()
            try:
                backend = self._get(conn, path)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                conn = None
                if not reused:
                    self._record(Sample(started, None, "closed on a new connection"))
                    continue
                with self._lock:
                    self.retries += 1
                conn = http.client.HTTPConnection(host, port, timeout=10)
                try:
                    backend = self._get(conn, path)
                except Exception as exc:  # every failure is recorded, none is raised
                    self._record(Sample(started, None, f"retry failed: {exc!r}"))
                    conn.close()
                    conn = None
                    continue
            except Exception as exc:  # every failure is recorded, none is raised
                self._record(Sample(started, None, repr(exc)))
                conn.close()
                conn = None
                continue
            reused = True
            if backend is None:
                self._record(Sample(started, None, "no X-Backend header"))
            else:
                self._record(Sample(started, backend))
        if conn is not None:
            conn.close()

    @staticmethod
    def _get(conn: http.client.HTTPConnection, path: str) -> str | None:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return response.getheader("X-Backend")

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)
