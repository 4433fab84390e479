"""A scoring server for one registered model version, with the metrics canary reads.

Run as ``python -m canary.demo.scoring_server --model credit-risk --version 2 --port P``
(``MLFLOW_TRACKING_URI`` names the registry; the daemon's ``serving.start`` sets it). It
loads ``models:/MODEL/VERSION`` with ``mlflow.pyfunc.load_model``, scores every record of a
``POST /invocations``, and exports the same Prometheus series as the simulated server
(``canary.sim.metrics``: requests by status, latency histogram, predictions by group and
class, labels by group and correctness), so one policy shape fits both. Labels sent with a
request are counted only after ``--label-delay`` seconds, as ground truth arrives late in
production (``canary.demo.payload``).

Why not ``mlflow models serve``: it takes about 25 s to start here, this about 5 (most of it
importing MLflow and loading the model). The HTTP side, the metrics and the label queue are
the simulated server's (``canary.sim``); only what a request does differs: a real model
answers, and a record it cannot score (an employment type it never saw) makes the request
fail with HTTP 500, as a real model server's would.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from canary import log as canary_log
from canary.core import names
from canary.demo.payload import parse_request
from canary.sim.config import SimConfig
from canary.sim.labels import LabelQueue, LabelWorker, PendingLabel
from canary.sim.metrics import TooManyGroupsError
from canary.sim.model_server import ModelApp, serve_app
from canary.sim.payload import BadRequestError

log = canary_log.get_logger(__name__)

Predictor = Callable[[list[dict[str, Any]]], list[int]]

DEFAULT_LABEL_DELAY_S = 2.0
_MESSAGE_CHARS = 300


class ScoringApp(ModelApp):
    """A served model version: the simulated server's app with a real model's answers.

    ``predict_records`` scores a list of feature records (0/1 each); it raises
    BadRequestError for a record that is not a valid request (HTTP 400) and anything else
    for one the model cannot score (HTTP 500). ``clock`` drives the label delay (tests
    pass a fake one).
    """

    def __init__(
        self,
        model: str,
        version: str,
        predict_records: Predictor,
        *,
        label_delay_s: float = DEFAULT_LABEL_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
        source: str = "",
    ) -> None:
        super().__init__(SimConfig(model=model, version=version, label_delay_s=label_delay_s))
        self.labels = LabelQueue(clock)
        self.label_worker = LabelWorker(self.labels, self._deliver_label)
        self._predict_records = predict_records
        self.source = source
        self.failures = 0
        self.last_failure: str | None = None

    def predict(self, body: bytes, started: float) -> tuple[int, dict[str, Any]]:
        """Answer one ``/invocations`` body (``started`` is unused: the latency is real)."""
        try:
            request = parse_request(body)
            for group in dict.fromkeys(request.groups):
                self.metrics.add_group(group)
        except (BadRequestError, TooManyGroupsError) as exc:
            return 400, {"error_code": "BAD_REQUEST", "message": str(exc)}
        try:
            predicted = self._predict_records(request.records)
        except BadRequestError as exc:
            return 400, {"error_code": "BAD_REQUEST", "message": str(exc)}
        except Exception as exc:
            # Whatever the model raises is this request's failure, not the server's.
            self.failures += 1
            self.last_failure = _short(exc)
            return 500, {"error_code": "INTERNAL_ERROR", "message": self.last_failure}
        if len(predicted) != len(request.records):
            self.failures += 1
            return 500, {"error_code": "INTERNAL_ERROR", "message": "wrong number of predictions"}
        for group, value, label in zip(request.groups, predicted, request.labels, strict=True):
            self.metrics.count_prediction(group, value)
            if label is None:
                continue
            pending = PendingLabel(group=group, correct=value == label)
            if self.config.label_delay_s > 0:
                self.labels.put(self.config.label_delay_s, pending)
            else:
                self._deliver_label(pending)
        return 200, {"predictions": predicted}

    def info(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "version": self.config.version,
            "source": self.source,
            "label_delay_s": self.config.label_delay_s,
            "pending_labels": len(self.labels),
            "failed_requests": self.failures,
            "last_failure": self.last_failure,
            "uptime_s": round(time.time() - self.started_at, 3),
        }


def _short(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:_MESSAGE_CHARS]


def model_uri(model: str, version: str) -> str:
    """``models:/MODEL/VERSION``, from names checked against their patterns first."""
    names.check(names.MODEL_NAME, model, "model name")
    names.check(names.VERSION, version, "model version")
    return f"models:/{model}/{version}"


def load_predictor(uri: str) -> tuple[Predictor, list[dict[str, Any]]]:
    """The registered model as a ``Predictor``, and its logged input example (for warm-up).

    Each record must carry every input column of the model's signature (a missing one is
    the client's error, HTTP 400). Rows then go straight to the underlying scikit-learn
    model as an array in signature order: through the pyfunc wrapper every call builds a
    pandas DataFrame and checks it, about 2 ms of CPU a request here against 0.3 ms, for a
    check the line above already made. A model without a raw scikit-learn object or a
    signature is scored through the pyfunc wrapper. MLflow is imported here: it is the
    slow part of starting.
    """
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped]

    model = mlflow.pyfunc.load_model(uri)
    schema = model.metadata.get_input_schema()
    columns = [str(c) for c in schema.input_names()] if schema is not None else []
    raw: Any = None
    try:
        raw = model.get_raw_model()
    except Exception:
        raw = None
    fast = bool(columns) and callable(getattr(raw, "predict", None))

    def predict(records: list[dict[str, Any]]) -> list[int]:
        for record in records:
            missing = [c for c in columns if c not in record]
            if missing:
                raise BadRequestError(f"a record lacks the model's inputs {missing}")
        if fast:
            rows = np.array([[r[c] for c in columns] for r in records], dtype=object)
            values = raw.predict(rows)
        else:
            values = model.predict(pd.DataFrame.from_records(records))
        return [int(value) for value in values]

    example = model.input_example
    warm: list[dict[str, Any]] = []
    if isinstance(example, pd.DataFrame):
        warm = [{str(k): v for k, v in r.items()} for r in example.to_dict(orient="records")]
    return predict, warm


def serve(app: ScoringApp, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and return.

    The simulated server's loop, around an app that is built (and its model loaded) before
    the port opens: a server that answers ``/health`` can score.
    """
    try:
        serve_app(app, host, port, event="scoring_server")
    finally:
        log.info("scoring_server.failed_requests", failed_requests=app.failures)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    def checked(pattern: Any, what: str) -> Callable[[str], str]:
        def parse(text: str) -> str:
            try:
                return names.check(pattern, text, what)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        return parse

    def delay(text: str) -> float:
        value = float(text)
        if not 0.0 <= value < 3600.0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a delay in [0, 3600) seconds")
        return value

    parser = argparse.ArgumentParser(
        prog="python -m canary.demo.scoring_server",
        description="Serve one registered MLflow model version with per-version, per-group "
        "Prometheus metrics and delayed labels.",
    )
    parser.add_argument("--model", required=True, type=checked(names.MODEL_NAME, "model name"))
    parser.add_argument("--version", required=True, type=checked(names.VERSION, "version"))
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--label-delay",
        type=delay,
        default=DEFAULT_LABEL_DELAY_S,
        help="seconds before a prediction's label is counted",
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking server (default: $MLFLOW_TRACKING_URI)"
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    canary_log.configure(level=args.log_level)
    # One thread per prediction: OpenMP's pool costs more than it saves on one row, and
    # several servers share the machine. Set before scikit-learn is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    uri = model_uri(args.model, args.version)
    started = time.monotonic()
    try:
        predict, warm = load_predictor(uri)
        if warm:
            predict(warm)  # the first prediction pays one-off costs; not a live request
    except Exception as exc:
        log.error("scoring_server.load_failed", uri=uri, error=_short(exc))
        return 1
    log.info("scoring_server.loaded", uri=uri, seconds=round(time.monotonic() - started, 2))
    app = ScoringApp(args.model, args.version, predict, label_delay_s=args.label_delay, source=uri)
    try:
        serve(app, args.host, args.port)
    except OSError as exc:
        log.error("scoring_server.failed", error=str(exc), host=args.host, port=args.port)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
