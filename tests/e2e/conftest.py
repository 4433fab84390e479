"""A whole rollout on real services: MLflow, Prometheus, HAProxy, model servers, a load
generator, a Slack sink and the ``canary run`` daemon as a separate process.

``rollout_world`` builds one isolated world per test: its own registered model (unique
name), its own Prometheus job, HAProxy, champion model server and daemon. The daemon starts
the candidate's model server itself through the policy's ``serving.start`` command; the
profiles file tells each version how to behave (its error rate, its per-group accuracy).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from canary.serving.process import stop_recorded_servers
from canary.sim.config import SimConfig
from canary.sim.loadgen import LoadGenerator
from tests.harness.haproxy import HAProxyInstance, runtime_command
from tests.harness.mlflow_server import MlflowServer, unique_model_name
from tests.harness.model_server import ModelServer, ModelServerFactory
from tests.harness.proc import ManagedProcess, free_port, wait_until
from tests.harness.prometheus import PrometheusServer
from tests.integration.notify.sink import Sink

TOKEN = "e2e-token-0123456789abcdef"
PORTS = 4  # ports the daemon may give the model servers it starts


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    for _ in range(200):
        first = free_port()
        if first + count >= 65535:
            continue
        ok = True
        for port in range(first, first + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return first
    raise RuntimeError("no free port range")


@dataclass
class Daemon:
    """A ``canary run`` process and the API it serves."""

    workdir: Path
    env: dict[str, str]
    api: str
    process: ManagedProcess | None = None
    starts: int = 0

    def start(self) -> Daemon:
        self.starts += 1
        self.process = ManagedProcess(
            name=f"canary-run-{self.starts}",
            argv=[sys.executable, "-m", "canary.cli", "run"],
            workdir=self.workdir,
            env=self.env,
        )
        self.process.start()
        self.process.wait_ready(
            lambda: httpx.get(f"{self.api}/readyz").status_code == 200, timeout=60
        )
        return self

    def kill(self) -> None:
        """SIGKILL, like an OOM kill or a power cut: nothing gets to clean up."""
        assert self.process is not None
        assert self.process.popen is not None
        os.kill(self.process.popen.pid, signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=40)

    def logs(self) -> list[dict[str, Any]]:
        events = []
        for path in sorted(self.workdir.glob("canary-run-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(json.JSONDecodeError):
                        events.append(json.loads(line))
        return events

    def rollouts(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.api}/rollouts", timeout=10).json())

    def rollout(self, rollout_id: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.api}/rollouts/{rollout_id}", timeout=10).json())

    def command(self, rollout_id: str, name: str) -> httpx.Response:
        return httpx.post(
            f"{self.api}/rollouts/{rollout_id}/{name}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )


@dataclass
class World:
    model: str
    mlflow: MlflowServer
    prometheus: PrometheusServer
    haproxy: HAProxyInstance
    champion: ModelServer
    daemon: Daemon
    sink: Sink
    load: LoadGenerator
    workdir: Path
    versions: dict[str, str] = field(default_factory=dict)

    def wait_rollout(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def check() -> bool:
            for summary in self.daemon.rollouts():
                if summary["model"] == self.model and predicate(summary):
                    found.update(summary)
                    return True
            return False

        try:
            wait_until(check, timeout=timeout, what=what, interval=0.25)
        except TimeoutError as exc:
            raise AssertionError(
                f"{what}: rollouts now {self.daemon.rollouts()}\n"
                + "\n".join(json.dumps(e) for e in self.daemon.logs()[-30:])
            ) from exc
        return found

    def haproxy_weights(self) -> dict[str, int]:
        out = {}
        for server in ("champion", "canary"):
            reply = runtime_command(self.haproxy, f"get weight {self.haproxy.backend}/{server}")
            if reply and reply[0].isdigit():
                out[server] = int(reply.split()[0])
        return out

    def slack(self) -> list[dict[str, Any]]:
        return [r.body for r in self.sink.delivered()]

    def slack_text(self) -> list[str]:
        return [str(body.get("text", "")) for body in self.slack()]

    def version_tags(self, version: str) -> dict[str, str]:
        mv = self.mlflow.client().get_model_version(self.model, version)
        return dict(mv.tags)

    def aliases(self) -> dict[str, str]:
        return dict(self.mlflow.client().get_registered_model(self.model).aliases)


def write_policy(
    path: Path,
    model: str,
    haproxy: HAProxyInstance,
    first_port: int,
    profiles: Path,
    steps: list[dict[str, Any]],
    extra_analysis: dict[str, Any] | None = None,
) -> None:
    selector = f'model="{model}"'
    analysis: dict[str, Any] = {
        "interval": "1s",
        "alpha": 0.05,
        "max_duration": "10m",
        "on_query_error": {"consecutive_limit": 5, "then": "rollback"},
        "on_no_data": {"after": "2m", "then": "rollback"},
        "metrics": [
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
        ],
    }
    analysis.update(extra_analysis or {})
    policy = {
        "model": model,
        "trigger": {"alias": "challenger"},
        "champion_alias": "champion",
        "serving": {
            "address": "127.0.0.1:{port}",
            "start": [
                sys.executable,
                "-m",
                "canary.sim.model_server",
                "--model",
                "{model}",
                "--version",
                "{version}",
                "--port",
                "{port}",
                "--profiles",
                str(profiles),
                "--seed",
                "11",
                "--log-level",
                "warning",
            ],
            "health": "http://{address}/health",
            "ports": {"first": first_port, "last": first_port + PORTS - 1},
            "ready_timeout": "30s",
        },
        "router": {
            "type": "haproxy",
            "runtime_api": haproxy.runtime_tcp.removeprefix("tcp:"),
            "backend": haproxy.backend,
            "champion_server": "champion",
            "canary_server": "canary",
        },
        "steps": steps,
        "analysis": analysis,
        "offline_gate": {"accuracy": {"min": 0.8, "max_drop_vs_champion": 0.02}},
        "notify": {"slack": {}},
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


@pytest.fixture
def rollout_world(
    tmp_path: Path,
    mlflow_server: MlflowServer,
    prometheus: PrometheusServer,
    prometheus_job: str,
    haproxy_factory: Callable[..., HAProxyInstance],
) -> Iterator[Callable[..., World]]:
    """Build a world: ``build(profiles={"2": {...}}, steps=[...])`` → a running rollout."""
    started: list[World] = []
    servers = ModelServerFactory(tmp_path / "servers")

    def build(
        profiles: dict[str, dict[str, Any]],
        steps: list[dict[str, Any]],
        champion: dict[str, Any] | None = None,
        extra_analysis: dict[str, Any] | None = None,
        rps: float = 300.0,
        metrics_server: PrometheusServer | None = None,
        candidate_metrics: dict[str, float] | None = None,
    ) -> World:
        prom = metrics_server or prometheus
        model = unique_model_name("e2e")
        v1 = mlflow_server.register_version(model, {"accuracy": 0.9}, aliases=["champion"])
        base = {"error_rate": 0.05, "accuracy": 0.9, "label_delay_s": 0.0}
        champion_server = servers(
            SimConfig(model=model, version=v1, seed=5, **{**base, **(champion or {})})
        )
        first_port = free_port_range(PORTS)
        prom.scrape(
            prometheus_job,
            [champion_server.target]
            + [f"127.0.0.1:{p}" for p in range(first_port, first_port + PORTS)],
            interval="1s",
        )
        haproxy = haproxy_factory({"champion": f"127.0.0.1:{champion_server.port}"})
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
            haproxy,
            first_port,
            profiles_file,
            steps,
            extra_analysis,
        )
        sink = Sink().start()
        api_port = free_port()
        env = {
            "CANARY_POLICIES": str(policies),
            "CANARY_STATE_DIR": str(tmp_path / "state"),
            "CANARY_MLFLOW_TRACKING_URI": mlflow_server.url,
            "CANARY_PROMETHEUS_URL": prom.url,
            "CANARY_API_PORT": str(api_port),
            "CANARY_API_TOKEN": TOKEN,
            "CANARY_SLACK_WEBHOOK_URL": sink.url("/slack"),
            "CANARY_REGISTRY_POLL_INTERVAL": "1s",
            "CANARY_QUERY_TIMEOUT": "2s",
            "CANARY_LOG_FORMAT": "json",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
        daemon = Daemon(tmp_path, env, f"http://127.0.0.1:{api_port}")
        load = LoadGenerator(haproxy.url, rps=rps, groups={"a": 0.5, "b": 0.5}, workers=6, seed=3)
        world = World(
            model, mlflow_server, prom, haproxy, champion_server, daemon, sink, load, tmp_path
        )
        started.append(world)
        load.start()
        # Prometheus must have the champion's series before the rollout's first reading.
        prom.wait_for_value(
            f'sum(model_requests_total{{model="{model}"}})', lambda v: v > 0, timeout=30
        )
        daemon.start()
        world.versions["1"] = v1
        world.versions["2"] = mlflow_server.register_version(
            model, candidate_metrics or {"accuracy": 0.9}, aliases=["challenger"]
        )
        return world

    yield build
    for world in started:
        world.load.request_stop()
        world.daemon.stop()
        # The daemon leaves the servers it started running when it exits, as it must (one
        # may be the champion by now): stop them here.
        stop_recorded_servers(
            world.workdir / "state" / "servers", command_contains=b"canary.sim.model_server"
        )
        world.load.stop()
        world.sink.stop()
    servers.stop_all()
