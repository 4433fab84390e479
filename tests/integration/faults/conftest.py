"""Fault tests on real processes: a ``canary run`` daemon mid-rollout, and one backend broken.

``fault_world`` builds one isolated rollout per test, like ``tests/e2e`` does (its own
registered model, Prometheus job, proxy, champion model server, Slack sink and daemon), but
lets the test pick the proxy (HAProxy over TCP or over its unix socket, or nginx), bring its
own MLflow server (one it may stop and start again) and script the Slack sink. The faults
themselves are made on the real processes: a stopped server, a runtime socket that is
gone, an nginx configuration that no longer passes ``nginx -t``, a sink answering 500 or
holding requests until the client gives up.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import yaml

from canary.serving.process import stop_recorded_servers
from canary.sim.config import SimConfig
from canary.sim.loadgen import LoadGenerator
from tests.e2e.conftest import PORTS, TOKEN, Daemon, free_port_range
from tests.harness.haproxy import HAProxyInstance, runtime_command
from tests.harness.mlflow_server import (
    CLIENT_ENV,
    MlflowServer,
    start_mlflow_server,
    unique_model_name,
)
from tests.harness.model_server import ModelServer, ModelServerFactory
from tests.harness.nginx import NginxInstance
from tests.harness.proc import free_port, wait_until
from tests.harness.prometheus import PrometheusServer
from tests.integration.notify.sink import Sink

RouterKind = Literal["haproxy", "haproxy-unix", "nginx"]


FINAL = ("promoted", "rolled_back", "aborted", "failed", "rejected")


def finished(summary: dict[str, Any]) -> bool:
    return summary["phase"] in FINAL


# --- an MLflow server a test may stop and start again ------------------------------------


class StoppableMlflow:
    """``mlflow server`` on a fixed port and folder, so a restart serves the same registry.

    The session's shared server cannot be stopped by one test; this one belongs to a test.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.server: MlflowServer | None = None

    def start(self) -> MlflowServer:
        self.starts += 1
        started = start_mlflow_server(self.workdir, port=self.port, name=f"mlflow-{self.starts}")
        if self.server is None:
            self.server = started
        else:  # the same object for the test, with its client state, on the new process
            self.server.process = started.process
        return self.server

    def freeze(self) -> None:
        """SIGSTOP the server's process group: it still accepts connections (the kernel
        does) but answers nothing, so every request times out, like a hung server."""
        assert self.server is not None
        self.server.process.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.server is not None:
            self.server.process.signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the whole process group and wait until the port answers nothing."""
        if self.server is None:
            return
        self.server.process.stop()

        def refused() -> bool:
            try:
                httpx.get(f"{self.url}/health", timeout=1)
            except httpx.HTTPError:
                return True
            return False

        wait_until(refused, timeout=20, what="mlflow stopped")


@pytest.fixture
def stoppable_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoppableMlflow]:
    for key, value in CLIENT_ENV.items():  # the client fails fast while the server is down
        monkeypatch.setenv(key, value)
    mlflow = StoppableMlflow(tmp_path / "mlflow")
    mlflow.workdir.mkdir()
    mlflow.start()
    yield mlflow
    if mlflow.server is not None:
        mlflow.thaw()
        mlflow.server.process.stop()


# --- the world ---------------------------------------------------------------------------


@dataclass
class FaultWorld:
    """One rollout's worth of real services, and the ways a test looks at them."""

    model: str
    mlflow: MlflowServer
    prometheus: PrometheusServer
    champion: ModelServer
    daemon: Daemon
    sink: Sink
    load: LoadGenerator
    workdir: Path
    haproxy: HAProxyInstance | None = None
    nginx: NginxInstance | None = None
    versions: dict[str, str] = field(default_factory=dict)

    # --- the daemon ----------------------------------------------------------------------

    def wait_rollout(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """The first of this model's rollouts that satisfies ``predicate`` (polled)."""
        found: dict[str, Any] = {}

        def check() -> bool:
            for summary in self.daemon.rollouts():
                if summary["model"] == self.model and predicate(summary):
                    found.update(summary)
                    return True
            return False

        try:
            wait_until(check, timeout=timeout, what=what, interval=0.1)
        except TimeoutError as exc:
            rollouts = self.daemon.rollouts()
            raise AssertionError(f"{what}: rollouts now {rollouts}\n{self.tail()}") from exc
        return found

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        """The daemon's structured log events called ``name`` with these field values."""
        return [
            e
            for e in self.daemon.logs()
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        ]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(str(e) for e in self.daemon.logs()[-lines:])

    def errors_counted(self, kind: str) -> float:
        """``canary_errors_total{kind=...}`` from the daemon's own /metrics."""
        text = httpx.get(f"{self.daemon.api}/metrics", timeout=10).text
        match = re.search(rf'^canary_errors_total{{kind="{kind}"}} (\S+)$', text, re.MULTILINE)
        assert match is not None, f"no canary_errors_total for {kind} in /metrics"
        return float(match[1])

    def alive(self) -> bool:
        process = self.daemon.process
        return (
            process is not None
            and process.running
            and httpx.get(f"{self.daemon.api}/healthz", timeout=10).status_code == 200
        )

    @contextlib.contextmanager
    def daemon_frozen(self) -> Iterator[None]:
        """SIGSTOP the daemon for the block: a fault made inside it is in place before the
        daemon's next tick, whatever that tick would have decided."""
        assert self.daemon.process is not None
        assert self.daemon.process.popen is not None
        pid = self.daemon.process.popen.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    # --- traffic -------------------------------------------------------------------------

    def served(self, seconds: float) -> dict[str, int]:
        """Requests answered by each version over the next ``seconds`` of live load."""
        before = dict(self.load.stats().by_version)
        time.sleep(seconds)
        after = self.load.stats().by_version
        return {v: after.get(v, 0) - before.get(v, 0) for v in set(before) | set(after)}

    def haproxy_weights(self) -> dict[str, int]:
        """``get weight`` of each arm, asked over HAProxy's TCP runtime API."""
        assert self.haproxy is not None
        out = {}
        for server in ("champion", "canary"):
            reply = runtime_command(self.haproxy, f"get weight {self.haproxy.backend}/{server}")
            if reply and reply[0].isdigit():
                out[server] = int(reply.split()[0])
        return out

    # --- the registry and Slack ----------------------------------------------------------

    def version_tags(self, version: str) -> dict[str, str]:
        return dict(self.mlflow.client().get_model_version(self.model, version).tags)

    def aliases(self) -> dict[str, str]:
        return dict(self.mlflow.client().get_registered_model(self.model).aliases)

    def slack_texts(self) -> list[str]:
        """The text of every Slack message the sink answered with success, in order."""
        return [str(r.body.get("text", "")) for r in self.sink.delivered()]


def metric_queries(model: str) -> list[dict[str, Any]]:
    """The analysis metrics of the e2e policy: error rate, and accuracy per group."""
    selector = f'model="{model}"'
    return [
        {
            "name": "errors",
            "kind": "ratio",
            "events": f'model_requests_total{{{selector}, code=~"5.."}}',
            "total": f"model_requests_total{{{selector}}}",
            "worse_when": "higher",
            "tolerance": {"relative": 0.5},
        },
        {
            "name": "accuracy",
            "kind": "ratio",
            "events": f'model_labelled_total{{{selector}, correct="true"}}',
            "total": f"model_labelled_total{{{selector}}}",
            "worse_when": "lower",
            "slice_by": "group",
            "tolerance": {"absolute": 0.05},
        },
    ]


def quick_promotion(model: str) -> dict[str, Any]:
    """Analysis settings under which a good canary reaches its minimum sample in seconds:
    one metric (errors), a loose tolerance and a lower power. Rollbacks of a clearly worse
    canary are still decided; these tests are about faults, not about sensitivity."""
    errors = {**metric_queries(model)[0], "tolerance": {"relative": 1.0}}
    return {"power": 0.5, "metrics": [errors]}


def write_policy(
    path: Path,
    model: str,
    router: dict[str, Any],
    first_port: int,
    profiles: Path,
    steps: list[dict[str, Any]],
    extra_analysis: dict[str, Any] | None = None,
) -> None:
    analysis: dict[str, Any] = {
        "interval": "1s",
        "alpha": 0.05,
        "max_duration": "10m",
        "on_query_error": {"consecutive_limit": 30, "then": "rollback"},
        "on_no_data": {"after": "2m", "then": "rollback"},
        "metrics": metric_queries(model),
        **(extra_analysis or {}),
    }
    start = [sys.executable, "-m", "canary.sim.model_server", "--model", "{model}"]
    start += ["--version", "{version}", "--port", "{port}", "--profiles", str(profiles)]
    start += ["--seed", "11", "--log-level", "warning"]
    policy = {
        "model": model,
        "trigger": {"alias": "challenger"},
        "champion_alias": "champion",
        "serving": {
            "address": "127.0.0.1:{port}",
            "start": start,
            "health": "http://{address}/health",
            "ports": {"first": first_port, "last": first_port + PORTS - 1},
            "ready_timeout": "30s",
        },
        "router": router,
        "steps": steps,
        "analysis": analysis,
        "offline_gate": {"accuracy": {"min": 0.8, "max_drop_vs_champion": 0.02}},
        "notify": {"slack": {}},
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


@pytest.fixture
def fault_world(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    prometheus: PrometheusServer,
    prometheus_job: str,
    haproxy_factory: Callable[..., HAProxyInstance],
    nginx_factory: Callable[..., NginxInstance],
) -> Iterator[Callable[..., FaultWorld]]:
    """``build(profiles={"2": {...}}, steps=[...], router="nginx", ...)`` -> a world whose
    daemon has just been given version 2 as the challenger.

    ``mlflow`` defaults to the session's shared server; pass a test's own to stop it.
    ``fast`` uses :func:`quick_promotion`, for tests that wait for a promotion.
    """
    built: list[FaultWorld] = []
    servers = ModelServerFactory(tmp_path / "servers")

    def build(
        profiles: dict[str, dict[str, Any]],
        steps: list[dict[str, Any]],
        *,
        router: RouterKind = "haproxy",
        mlflow: MlflowServer | None = None,
        sink: Sink | None = None,
        extra_analysis: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
        rps: float = 150.0,
        fast: bool = False,
    ) -> FaultWorld:
        registry = mlflow or request.getfixturevalue("mlflow_server")
        model = unique_model_name("fault")
        v1 = registry.register_version(model, {"accuracy": 0.9}, aliases=["champion"])
        champion = servers(
            SimConfig(
                model=model, version=v1, seed=5, error_rate=0.05, accuracy=0.9, label_delay_s=0.0
            )
        )
        first_port = free_port_range(PORTS)
        prometheus.scrape(
            prometheus_job,
            [champion.target] + [f"127.0.0.1:{p}" for p in range(first_port, first_port + PORTS)],
            interval="1s",
        )
        haproxy: HAProxyInstance | None = None
        nginx: NginxInstance | None = None
        router_config: dict[str, Any]
        if router == "nginx":
            nginx = nginx_factory(champion.target)
            router_config = {
                "type": "nginx",
                "upstream": nginx.upstream,
                "include_file": str(nginx.include_file),
                "nginx": nginx.binary,
                "conf": str(nginx.conf),
                "prefix": str(nginx.prefix),
            }
            proxy_url = nginx.url
        else:
            haproxy = haproxy_factory({"champion": champion.target})
            api = haproxy.runtime_unix if router == "haproxy-unix" else haproxy.runtime_tcp
            router_config = {
                "type": "haproxy",
                "runtime_api": api if api.startswith("unix:") else api.removeprefix("tcp:"),
                "backend": haproxy.backend,
                "timeout": "2s",
            }
            proxy_url = haproxy.url
        profiles_file = tmp_path / "profiles.yaml"
        profiles_file.write_text(
            yaml.safe_dump(
                {k: {"error-rate": 0.05, "accuracy": 0.9, **v} for k, v in profiles.items()}
            )
        )
        policies = tmp_path / "policies"
        policies.mkdir()
        write_policy(
            policies / f"{model}.yaml",
            model,
            router_config,
            first_port,
            profiles_file,
            steps,
            {**(quick_promotion(model) if fast else {}), **(extra_analysis or {})},
        )
        sink = sink or Sink()
        sink.start()
        api_port = free_port()
        env = {
            "CANARY_POLICIES": str(policies),
            "CANARY_STATE_DIR": str(tmp_path / "state"),
            "CANARY_MLFLOW_TRACKING_URI": registry.url,
            "CANARY_PROMETHEUS_URL": prometheus.url,
            "CANARY_API_PORT": str(api_port),
            "CANARY_API_TOKEN": TOKEN,
            "CANARY_SLACK_WEBHOOK_URL": sink.url("/slack"),
            "CANARY_REGISTRY_POLL_INTERVAL": "1s",
            "CANARY_QUERY_TIMEOUT": "2s",
            "CANARY_LOG_FORMAT": "json",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            **(extra_env or {}),
        }
        daemon = Daemon(tmp_path, env, f"http://127.0.0.1:{api_port}")
        load = LoadGenerator(proxy_url, rps=rps, groups={"a": 0.5, "b": 0.5}, workers=4, seed=3)
        world = FaultWorld(
            model=model,
            mlflow=registry,
            prometheus=prometheus,
            champion=champion,
            daemon=daemon,
            sink=sink,
            load=load,
            workdir=tmp_path,
            haproxy=haproxy,
            nginx=nginx,
        )
        built.append(world)
        load.start()
        # Prometheus must have the champion's series before the rollout's first reading.
        prometheus.wait_for_value(
            f'sum(model_requests_total{{model="{model}"}})', lambda v: v > 0, timeout=30
        )
        daemon.start()
        world.versions["1"] = v1
        world.versions["2"] = registry.register_version(
            model, {"accuracy": 0.9}, aliases=["challenger"]
        )
        return world

    yield build
    for world in built:
        world.load.request_stop()
        if world.daemon.process is not None and world.daemon.process.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(world.daemon.process.popen.pid, signal.SIGCONT)
        world.daemon.stop()
        # The daemon leaves the servers it started running when it exits, as it must (one
        # may be the champion by now): stop them here.
        stop_recorded_servers(
            world.workdir / "state" / "servers", command_contains=b"canary.sim.model_server"
        )
        world.load.stop()
        world.sink.stop()
    servers.stop_all()
