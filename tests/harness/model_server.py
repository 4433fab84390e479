"""Simulated model versions (``canary.sim.model_server``) as real processes for the tests.

Each server is a separate process on a free loopback port, as a served model version is in
production: a proxy can route to it, Prometheus can scrape it, and a restart really resets
its counters (the case a metric source must survive).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from canary.sim.config import SimConfig
from tests.harness.proc import ManagedProcess, free_port, http_ok

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class ModelServer:
    """One running simulated model version."""

    config: SimConfig
    port: int
    workdir: Path
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        """``host:port`` as a Prometheus scrape target or a proxy server address."""
        return f"127.0.0.1:{self.port}"

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self, timeout: float = 20.0) -> ModelServer:
        argv = [
            sys.executable,
            "-m",
            "canary.sim.model_server",
            "--port",
            str(self.port),
            *self.config.to_argv(),
        ]
        self.process = ManagedProcess(
            name=f"model-{self.config.model}-v{self.config.version}-{self.port}",
            argv=argv,
            workdir=self.workdir,
            env={"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), _pythonpath()]))},
        )
        self.process.start()
        try:
            self.process.wait_ready(lambda: http_ok(f"{self.url}/health"), timeout=timeout)
        except BaseException:
            self.process.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM (the server drains in-flight requests), SIGKILL if it lingers."""
        if self.process is not None:
            self.process.stop()

    def restart(self, **changes: Any) -> ModelServer:
        """Stop and start again on the same port; counters start from zero.

        ``changes`` replace fields of the config (``error_rate=0.2``), so a test can also
        change a version's behaviour mid-run the way a redeploy would.
        """
        self.stop()
        if changes:
            self.config = dataclasses.replace(self.config, **changes)
        return self.start()

    def invoke(self, group: str = "a", **kwargs: Any) -> httpx.Response:
        """POST one ``{"group": ...}`` prediction request."""
        return httpx.post(f"{self.url}/invocations", json={"group": group}, **kwargs)

    def metrics_text(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``, scraped now."""
        return metric_sum(self.metrics_text(), name, **labels)

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process else ""


def metric_sum(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples ``name`` (e.g. ``model_requests_total``) matching ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _pythonpath() -> str:
    return os.environ.get("PYTHONPATH", "")


class ModelServerFactory:
    """Starts model servers on free ports; ``stop_all`` stops every one it started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[ModelServer] = []

    def __call__(self, config: SimConfig | None = None, /, **fields: Any) -> ModelServer:
        """Start a server from ``config`` and/or ``SimConfig`` fields (``version="2"``)."""
        config = dataclasses.replace(config or SimConfig(), **fields)
        server = ModelServer(config=config, port=free_port(), workdir=self.workdir)
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def model_server_factory(tmp_path: Path) -> Iterator[ModelServerFactory]:
    """``model_server_factory(version="2", error_rate=0.1)`` -> a running ``ModelServer``.

    Every server started through it is stopped when the test ends.
    """
    factory = ModelServerFactory(tmp_path / "model-servers")
    try:
        yield factory
    finally:
        factory.stop_all()
