"""A stand-in for Slack on this machine: an incoming-webhook endpoint that keeps messages.

The daemon sends its notifications exactly as it would to Slack (the same Block Kit body,
through the same outbox and retries); this endpoint answers ``ok`` like Slack does, keeps
each message's plain ``text`` and hands it to a callback, so the demo's timeline can show
what a channel would have received. Only loopback, only in the demo process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY_BYTES = 1 << 20
PATH = "/slack"


class SlackSink:
    """``start()`` listens on ``127.0.0.1:port``; ``url`` is the webhook URL to configure."""

    def __init__(self, port: int, on_message: Callable[[str], None] | None = None) -> None:
        self.port = port
        self.on_message = on_message
        self._messages: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="slack-sink",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def start(self) -> SlackSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def messages(self) -> list[str]:
        with self._lock:
            return list(self._messages)

    def receive(self, body: Any) -> None:
        """Keep one webhook body's ``text`` (Slack's fallback: the whole message in words)."""
        text = str(body.get("text", "")) if isinstance(body, dict) else ""
        with self._lock:
            self._messages.append(text)
        if self.on_message is not None:
            self.on_message(text)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = self.headers.get("Content-Length", "")
                if self.path != PATH or not length.isdigit() or int(length) > MAX_BODY_BYTES:
                    self._answer(404 if self.path != PATH else 400, b"invalid_payload")
                    return
                raw = self.rfile.read(int(length))
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._answer(400, b"invalid_payload")
                    return
                sink.receive(body)
                self._answer(200, b"ok")

            def _answer(self, status: int, text: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the timeline shows what matters."""

        return Handler
