"""A real Prometheus for the tests, started once per session.

Scrape and evaluation intervals are 1 s so that data shows up quickly, but even then the
first sample of a new target arrives several seconds after a reload (Prometheus hands
discovered targets to the scrape manager on a 5 s tick). Tests therefore never sleep: they
``wait_for`` a query result. Each test scrapes its own job (see the ``prometheus_job``
fixture) and filters its queries by that job, so tests sharing the server do not see each
other's series.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from canary.core import names
from tests.harness.proc import ManagedProcess, free_port, http_ok, require_binary

Vector = list[dict[str, Any]]

_TARGET = re.compile(r"^127\.0\.0\.1:[0-9]{1,5}$")  # tests only ever scrape loopback
_DURATION = re.compile(r"^[0-9]+(ms|s|m)$")


class PromQLError(RuntimeError):
    """Prometheus refused a query (``error_type`` is e.g. ``bad_data``)."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        super().__init__(f"{error_type}: {message}")


def scalar(result: Vector) -> float | None:
    """The value of a one-element instant vector, None when empty."""
    if not result:
        return None
    if len(result) > 1:
        raise ValueError(f"expected at most one series, got {len(result)}: {result}")
    return float(result[0]["value"][1])


@dataclass
class ScrapeJob:
    targets: list[str]
    interval: str
    metrics_path: str = "/metrics"

    def as_config(self, name: str) -> dict[str, Any]:
        return {
            "job_name": name,
            "scrape_interval": self.interval,
            # Prometheus rejects a timeout longer than the interval (default timeout: 10 s).
            "scrape_timeout": self.interval,
            "metrics_path": self.metrics_path,
            "static_configs": [{"targets": list(self.targets)}],
        }


@dataclass
class PrometheusServer:
    """A running Prometheus: ``url``, scrape targets per job, and query helpers."""

    process: ManagedProcess
    port: int
    config_path: Path
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    jobs: dict[str, ScrapeJob] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- configuration ---------------------------------------------------------------------

    def write_config(self) -> None:
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "scrape_configs": [job.as_config(name) for name, job in self.jobs.items()],
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def scrape(
        self,
        job: str,
        targets: Sequence[str],
        interval: str = "1s",
        metrics_path: str = "/metrics",
    ) -> None:
        """Scrape ``targets`` (``127.0.0.1:PORT``) as ``job``; an empty list removes the job.

        Rewrites the config, reloads, and returns once Prometheus runs the new config.
        """
        names.check(names.LABEL_VALUE, job, "job name")
        for target in targets:
            if not _TARGET.fullmatch(target):
                raise ValueError(f"target {target!r} is not 127.0.0.1:PORT")
        if not _DURATION.fullmatch(interval):
            raise ValueError(f"interval {interval!r} is not like 1s or 500ms")
        if targets:
            self.jobs[job] = ScrapeJob(list(targets), interval, metrics_path)
        else:
            self.jobs.pop(job, None)
        self.reload()

    def remove(self, job: str) -> None:
        if job in self.jobs:
            self.scrape(job, [])

    def reload(self) -> None:
        """Write the config, POST ``/-/reload`` and confirm the running config has our jobs.

        ``/-/reload`` answers 500 with the reason when the new config is invalid; the check
        of ``/api/v1/status/config`` confirms the reload took rather than trusting a 200.
        """
        self.write_config()
        response = httpx.post(f"{self.url}/-/reload", timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"prometheus reload failed: {response.text.strip()}")
        running = yaml.safe_load(self._get("/api/v1/status/config")["yaml"])
        jobs = {c["job_name"]: c for c in running.get("scrape_configs") or []}
        if set(jobs) != set(self.jobs):
            raise RuntimeError(f"prometheus runs jobs {sorted(jobs)}, wanted {sorted(self.jobs)}")
        for name, job in self.jobs.items():
            configured = [t for sc in jobs[name]["static_configs"] for t in sc["targets"]]
            if sorted(configured) != sorted(job.targets):
                raise RuntimeError(f"prometheus job {name} scrapes {configured}, not {job.targets}")

    # -- queries ---------------------------------------------------------------------------

    def query(self, promql: str, at: float | None = None) -> Vector:
        """Instant query; the result list (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        params: dict[str, str | float] = {"query": promql}
        if at is not None:
            params["time"] = at
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: Vector = data["result"]
        return result

    def query_value(self, promql: str) -> float | None:
        """The single value a query returns, None when it returns nothing."""
        return scalar(self.query(promql))

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[Vector], bool],
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> Vector:
        """Poll ``promql`` until ``predicate(result)`` holds; return that result.

        A query error (bad PromQL) fails at once: waiting would not fix it.
        """
        deadline = time.monotonic() + timeout
        last: Vector | None = None
        while True:
            last = self.query(promql)
            if predicate(last):
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{promql!r}: condition not met in {timeout:.0f}s; last {last}")
            time.sleep(interval)

    def wait_for_value(
        self, promql: str, predicate: Callable[[float], bool], timeout: float = 30.0
    ) -> float:
        """Poll until the query has exactly one value and ``predicate(value)`` holds."""

        def holds(result: Vector) -> bool:
            value = scalar(result)
            return value is not None and predicate(value)

        value = scalar(self.wait_for(promql, holds, timeout))
        assert value is not None
        return value

    def targets(self, job: str) -> list[dict[str, Any]]:
        """Active targets of ``job`` as Prometheus reports them (``health``, ``lastError``)."""
        data = self._get("/api/v1/targets", {"state": "active"})
        return [t for t in data["activeTargets"] if t.get("scrapePool") == job]

    def wait_targets_up(self, job: str, timeout: float = 30.0) -> None:
        """Wait until every target of ``job`` has been scraped successfully."""
        want = len(self.jobs[job].targets)
        deadline = time.monotonic() + timeout
        while True:
            up = [t for t in self.targets(job) if t.get("health") == "up"]
            if len(up) == want:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job}: {len(up)}/{want} targets up: {self.targets(job)}")
            time.sleep(0.25)

    def _get(self, path: str, params: dict[str, str | float] | None = None) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(body.get("errorType", "unknown"), body.get("error", response.text))
        return body["data"]


def start_prometheus(workdir: Path, interval: str = "1s") -> PrometheusServer:
    """Start Prometheus with no jobs in ``workdir``; return once ``/-/ready`` answers."""
    binary = require_binary("prometheus")
    port = free_port()
    config_path = workdir / "prometheus.yml"
    process = ManagedProcess(
        name="prometheus",
        argv=[
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=info",
        ],
        workdir=workdir,
    )
    server = PrometheusServer(
        process=process,
        port=port,
        config_path=config_path,
        scrape_interval=interval,
        evaluation_interval=interval,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    server.write_config()
    process.start()
    try:
        process.wait_ready(lambda: http_ok(f"{server.url}/-/ready"), timeout=30)
    except BaseException:
        process.stop()
        raise
    return server


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One real Prometheus for the whole session, stopped at the end."""
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"))
    try:
        yield server
    finally:
        server.process.stop()


_job_numbers = itertools.count(1)


@pytest.fixture
def prometheus_job(request: pytest.FixtureRequest, prometheus: PrometheusServer) -> Iterator[str]:
    """A job name of this test's own; its scrape config is removed after the test."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    job = f"{stem}_{next(_job_numbers)}"
    try:
        yield job
    finally:
        prometheus.remove(job)
