"""A simulated served model version: predictions over HTTP, Prometheus metrics per version.

Run as ``python -m canary.sim.model_server --port P --model credit-risk --version 2 ...``
(options in ``canary.sim.config``). It answers like ``mlflow models serve`` does
(``POST /invocations``, ``GET /health``) so a proxy, Prometheus and the controller can be
exercised end to end without training anything, and it can be told to be worse than its
baseline in exactly one way (errors, slow tail, one group's accuracy) so that each canary
check can be shown to catch what it should.

Endpoints: ``POST /invocations``, ``GET /health`` (and ``/ping``), ``GET /metrics``,
``GET /`` (model, version and behaviour as JSON). Only the standard library and
prometheus_client: it starts in a fraction of a second, which keeps the tests fast.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics

from canary import log as canary_log
from canary.sim.behaviour import SimulatedModel
from canary.sim.config import SimConfig, parse_args
from canary.sim.labels import LabelQueue, LabelWorker, PendingLabel
from canary.sim.metrics import ModelMetrics, TooManyGroupsError
from canary.sim.payload import BadRequestError, groups_from_body

log = canary_log.get_logger(__name__)

MAX_BODY_BYTES = 1 << 20
DRAIN_TIMEOUT_S = 5.0


class ModelApp:
    """Everything one server process holds: behaviour, metrics, pending labels."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.model = SimulatedModel(config)
        self.metrics = ModelMetrics(config.model, config.version, config.groups)
        self.labels = LabelQueue()
        self.label_worker = LabelWorker(self.labels, self._deliver_label)
        self.started_at = time.time()
        self._inflight = 0
        self._inflight_cond = threading.Condition()
        self.draining = False

    def predict(self, body: bytes, started: float) -> tuple[int, dict[str, Any]]:
        """Answer one ``/invocations`` body; ``started`` is when the request arrived."""
        try:
            groups = groups_from_body(body)
            for group in dict.fromkeys(groups):
                self.metrics.add_group(group)
        except (BadRequestError, TooManyGroupsError) as exc:
            return 400, {"error_code": "BAD_REQUEST", "message": str(exc)}
        outcome = self.model.respond(groups)
        remaining = outcome.latency_s - (time.perf_counter() - started)
        if remaining > 0:
            time.sleep(remaining)  # the simulated inference time
        if outcome.status != 200:
            return outcome.status, {"error_code": "INTERNAL_ERROR", "message": "simulated"}
        for p in outcome.predictions:
            self.metrics.count_prediction(p.group, p.predicted)
            if not p.labelled:
                continue
            label = PendingLabel(group=p.group, correct=p.correct)
            if self.config.label_delay_s > 0:
                self.labels.put(self.config.label_delay_s, label)
            else:
                self._deliver_label(label)
        return 200, {"predictions": [p.predicted for p in outcome.predictions]}

    def exposition(self) -> bytes:
        self.label_worker.deliver_due()  # a scrape sees every label that is due by now
        return self.metrics.exposition()

    def info(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "version": self.config.version,
            "behaviour": asdict(self.config),
            "pending_labels": len(self.labels),
            "in_flight": self._inflight,
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    def enter(self) -> None:
        with self._inflight_cond:
            self._inflight += 1

    def leave(self) -> None:
        with self._inflight_cond:
            self._inflight -= 1
            self._inflight_cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait for requests being answered to finish; False if some still run."""
        with self._inflight_cond:
            return self._inflight_cond.wait_for(lambda: self._inflight == 0, timeout)

    def _deliver_label(self, label: PendingLabel) -> None:
        self.metrics.count_label(label.group, label.correct)


class SimServer(ThreadingHTTPServer):
    """One thread per connection (keep-alive from a proxy holds one thread, not one per
    request); threads are daemons so idle keep-alive connections never block exit."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: ModelApp) -> None:
        self.app = app
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    """Routes the four endpoints; HTTP/1.1 so proxies and clients keep connections open."""

    protocol_version = "HTTP/1.1"
    # Without this, small responses on a kept-alive connection wait for delayed ACKs:
    # 20-40 ms a request behind a proxy.
    disable_nagle_algorithm = True
    server_version = "canary-sim-model"

    @property
    def app(self) -> ModelApp:
        return cast(SimServer, self.server).app

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/health", "/ping"):
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            self._send(200, self.app.exposition(), CONTENT_TYPE_LATEST)
        elif path == "/":
            self._send_json(200, self.app.info())
        else:
            self._send_json(404, {"error_code": "NOT_FOUND", "message": path})

    def do_POST(self) -> None:
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        if path != "/invocations":
            self._discard_body()
            self._send_json(404, {"error_code": "NOT_FOUND", "message": path})
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self.close_connection = True
            self._send_json(411, {"error_code": "BAD_REQUEST", "message": "Content-Length"})
            return
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"error_code": "BAD_REQUEST", "message": "body too large"})
            return
        body = self.rfile.read(length)
        self.app.enter()
        try:
            status, payload = self.app.predict(body, started)
            self.app.metrics.observe_request(status, time.perf_counter() - started)
            self._send_json(status, payload)
        finally:
            self.app.leave()

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) <= MAX_BODY_BYTES:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Model-Name", self.app.config.model)
        self.send_header("X-Model-Version", self.app.config.version)
        if self.app.draining:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a load test writes hundreds of lines a second otherwise."""

    def log_error(self, format: str, *args: Any) -> None:
        log.warning("model_server.http_error", detail=format % args, client=self.client_address[0])


def serve(config: SimConfig, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and return."""
    serve_app(ModelApp(config), host, port, event="model_server", seed=config.seed)


def serve_app(app: ModelApp, host: str, port: int, *, event: str, **fields: Any) -> None:
    """The serving loop of any ``ModelApp`` (this simulated one, or the demo's real model):
    serve until SIGTERM or SIGINT, then finish the requests in flight and the pending labels'
    worker. ``event`` prefixes the log events; ``fields`` are added to the start event."""
    # *_created series would double what Prometheus stores for no use here.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    server = SimServer((host, port), app)
    app.label_worker.start()

    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt the main thread inside a log write.
        received.append(signal.Signals(signum).name)
        app.draining = True
        # shutdown() waits for serve_forever to return, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        f"{event}.started",
        host=host,
        port=server.server_address[1],
        model=app.config.model,
        version=app.config.version,
        **fields,
    )
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        log.info(f"{event}.stopping", signal=received[0] if received else None)
        idle = app.wait_idle(DRAIN_TIMEOUT_S)
        app.label_worker.stop()
        server.server_close()
        log.info(f"{event}.stopped", drained=idle, pending_labels=len(app.labels))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    canary_log.configure(level=args.log_level)
    try:
        serve(args.config, args.host, args.port)
    except OSError as exc:
        log.error("model_server.failed", error=str(exc), host=args.host, port=args.port)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
