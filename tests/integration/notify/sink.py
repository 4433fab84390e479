"""A real HTTP endpoint for notification tests: records every request, answers as told.

A ``ThreadingHTTPServer`` on a free loopback port, in the test process. It can answer a
scripted sequence of statuses, or hang (hold the request open until released), so tests see
what a real Slack or webhook receiver would get, retries and timeouts included.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.harness.proc import free_port

HANG = -1
"""A scripted answer: hold the request until the sink is released (or 60 s pass)."""


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    answered: int  # the status the sink answered (HANG for a request it held)
    at: float = field(default_factory=time.time)  # when the request arrived (wall clock)


class Sink:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self.default = 200
        self._script: deque[int] = deque()
        self._lock = threading.Lock()
        self.release = threading.Event()
        self.hanging = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, then with ``default``."""
        with self._lock:
            self._script.extend(statuses)

    def delivered(self) -> list[Received]:
        """Requests that were answered with success."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.answered < 300]

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> Sink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _next_status(self) -> int:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                status = sink._next_status()
                body = json.loads(raw) if raw else None
                sink._record(Received(self.path, dict(self.headers), body, status))
                if status == HANG:
                    sink.hanging.set()
                    sink.release.wait(60)
                    status = 200
                text = b"ok" if status < 300 else b"server_error"
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the client gave up waiting (a timeout test): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
