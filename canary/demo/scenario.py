"""The demo from start to end: build the world, run two rollouts, report what happened.

1. Start MLflow; meanwhile generate the data and train versions 1-3.
2. Log and register the three versions; ``champion`` -> version 1.
3. Serve version 1 with the scoring server, put HAProxy in front of it, let Prometheus
   scrape every model server port, start a Slack stand-in and the ``canary run`` daemon
   with the demo policy, and send live applications through HAProxy.
4. ``challenger`` -> version 2 and follow the rollout until it ends: it should be promoted.
5. ``challenger`` -> version 3 and follow again: it should be rolled back, naming group b.

Every wait polls with a deadline; a service that dies or a rollout that does not end in
time is a ``DemoError`` naming the log to read. Whatever happens, everything started here
is stopped on the way out (``Demo.close``), including the model servers the daemon started.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from canary.demo import configs, registry
from canary.demo.data import GROUP, LABEL, DemoData, demo_data
from canary.demo.evaluation import Evaluation, evaluate
from canary.demo.services import (
    DemoError,
    Service,
    find_binary,
    free_port,
    free_port_range,
    http_ok,
    port_is_free,
    python_module,
    start_haproxy,
    start_mlflow,
    start_prometheus,
    wait_until,
)
from canary.demo.slack_sink import SlackSink
from canary.demo.timeline import (
    Timeline,
    breach_line,
    clip,
    headline,
    offline_summary,
    progress_line,
    transition_line,
)
from canary.demo.traffic import LiveTraffic
from canary.serving.base import render, template_values
from canary.serving.process import stop_recorded_servers

MODEL = "credit-risk"
DEFAULT_API_PORT = 8181
DEFAULT_RPS = 250.0
SERVER_PORTS = 4  # ports the daemon may give the model servers it starts
ROLLOUT_TIMEOUT_S = 330.0  # the policy's max_duration is 5 minutes
PROGRESS_EVERY_S = 10.0
TERMINAL = ("promoted", "rolled_back", "aborted", "failed", "rejected")
HARMED_GROUP = "b"


@dataclass(frozen=True)
class DemoOptions:
    """``workdir`` holds every file and log; ``api_port`` 0 picks a free port."""

    workdir: Path
    api_port: int = DEFAULT_API_PORT
    rps: float = DEFAULT_RPS
    seed: int = 7


@dataclass
class DemoResult:
    """What the two rollouts did, and whether that is what the demo is meant to show."""

    promoted: bool = False
    rolled_back: bool = False
    harmed_groups: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.promoted and self.rolled_back and not self.problems


@dataclass
class _Ports:
    mlflow: int
    prometheus: int
    haproxy: int
    haproxy_runtime: int
    champion: int
    first_server: int
    api: int
    slack: int

    @property
    def server_ports(self) -> list[int]:
        return list(range(self.first_server, self.first_server + SERVER_PORTS))


class Demo:
    """One run of the demo in ``options.workdir``; ``run()``, then always ``close()``."""

    def __init__(self, options: DemoOptions, timeline: Timeline) -> None:
        self.options = options
        self.say = timeline.say
        self.detail = timeline.detail
        self.workdir = options.workdir
        self.services: list[Service] = []
        self.traffic: LiveTraffic | None = None
        self.slack: SlackSink | None = None
        self.daemon: Service | None = None
        self.api = ""
        self.mlflow_url = ""
        self.prometheus_url = ""
        self._seen: dict[str, int] = {}  # rollout id -> history entries printed

    # --- the scenario --------------------------------------------------------------------

    def run(self) -> DemoResult:
        ports = self._ports()
        self.say(f"canary demo: a real rollout on this machine; files and logs in {self.workdir}")
        self.mlflow_url = f"http://127.0.0.1:{ports.mlflow}"
        self.say(f"starting MLflow (SQLite) on {self.mlflow_url}")
        mlflow = self._add(start_mlflow(self.workdir, ports.mlflow))
        data, trained = self._train()
        mlflow.wait_ready(lambda: http_ok(f"{self.mlflow_url}/health"), timeout=180)
        self.say("MLflow is up")
        versions = self._register(data, trained)
        self._start_serving(ports, versions["1"])
        self._start_daemon(ports)
        self._start_traffic(data, ports)

        result = DemoResult()
        v2 = self._rollout(versions["2"], "a retrained model, on 16 times the data")
        if v2["phase"] == "promoted":
            result.promoted = True
            champion = registry.aliases(self.mlflow_url, MODEL).get("champion")
            self.say(f"v{versions['2']} promoted: MLflow's champion alias is now v{champion}")
            if champion != versions["2"]:
                result.problems.append(f"champion alias is v{champion}, not v{versions['2']}")
        else:
            result.problems.append(
                f"v{versions['2']} should have been promoted, but ended {v2['phase']}: "
                f"{v2['reason']}"
            )
        v3 = self._rollout(versions["3"], "retrained on a data set that lost almost all of group b")
        groups = sorted({str(b["slice"]) for b in v3.get("breaches", []) if b.get("slice")})
        result.harmed_groups = groups
        if v3["phase"] == "rolled_back" and HARMED_GROUP in groups:
            result.rolled_back = True
            tags = registry.version_tags(self.mlflow_url, MODEL, versions["3"])
            self.say(
                f"v{versions['3']} rolled back for group {', '.join(groups)}; MLflow tags it "
                f"canary.status={tags.get('canary.status', '?')}"
            )
        else:
            result.problems.append(
                f"v{versions['3']} should have been rolled back for group {HARMED_GROUP}, but "
                f"ended {v3['phase']} (groups named: {groups or 'none'}): {v3['reason']}"
            )
        self._report(result)
        return result

    def keep_running(self) -> None:
        """Keep everything up (and print any further rollout) until Ctrl-C or SIGTERM."""
        self.say(
            f"everything keeps running: status page {self.api}/status, MLflow UI "
            f"{self.mlflow_url}; set the challenger alias in MLflow to start another "
            "rollout; Ctrl-C stops it all"
        )
        self.detail(
            f"commands: CANARY_URL={self.api} CANARY_API_TOKEN=$(cat "
            f"{self.workdir / 'api-token'}) canary status|pause|resume|promote|abort"
        )
        while True:
            self._check_services()
            for summary in self._rollouts():
                self._print_history(summary["id"], str(summary["version"]))
            time.sleep(1.0)

    # --- steps ---------------------------------------------------------------------------

    def _ports(self) -> _Ports:
        api = self.options.api_port or free_port()
        if not port_is_free(api):
            raise DemoError(
                f"port {api} (the status page and API) is in use: pass --port 0 for any free "
                "port, or --port N"
            )
        find_binary("prometheus")
        find_binary("haproxy")
        return _Ports(
            mlflow=free_port(),
            prometheus=free_port(),
            haproxy=free_port(),
            haproxy_runtime=free_port(),
            champion=free_port(),
            first_server=free_port_range(SERVER_PORTS),
            api=api,
            slack=free_port(),
        )

    def _train(self) -> tuple[DemoData, dict[str, tuple[Any, Evaluation]]]:
        from canary.demo.models import predict, train

        data = demo_data(self.options.seed)
        live_b = float((data.live[GROUP] == "b").mean())
        self.say(
            f"data: synthetic credit applications, groups a and b; {len(data.live):,} live "
            f"ones ({100 * live_b:.0f}% group b) held out for traffic"
        )
        trained: dict[str, tuple[Any, Evaluation]] = {}
        for label, training in data.versions.items():
            model = train(training.train, seed=int(label))
            frame = training.validation
            evaluation = evaluate(frame[LABEL], predict(model, frame), frame[GROUP])
            trained[label] = (model, evaluation)
            self.say(f"trained v{label} on {training.description}")
            self.detail(f"its own validation split: {offline_summary(evaluation)}")
        return data, trained

    def _register(
        self, data: DemoData, trained: dict[str, tuple[Any, Evaluation]]
    ) -> dict[str, str]:
        versions: dict[str, str] = {}
        for label, (model, evaluation) in trained.items():
            done = registry.register_version(
                self.mlflow_url,
                MODEL,
                f"v{label}",
                model,
                data.versions[label],
                evaluation,
                self.workdir / "data",
            )
            versions[label] = done.version
        registry.set_alias(self.mlflow_url, MODEL, "champion", versions["1"])
        listed = ", ".join(f"v{v}" for v in versions.values())
        self.say(
            f"registered {MODEL} {listed} (runs with metrics, datasets and models); "
            f"champion -> v{versions['1']}"
        )
        return versions

    def _start_serving(self, ports: _Ports, champion: str) -> None:
        # The same command the daemon runs for the versions it serves, filled the same way.
        values = template_values(MODEL, champion, ports.champion)
        argv = [render(arg, values) for arg in configs.scoring_command(sys.executable)]
        server = Service(
            f"scoring-v{champion}",
            argv,
            self.workdir,
            {"MLFLOW_TRACKING_URI": self.mlflow_url},
        )
        self._add(server.start())
        server.wait_ready(lambda: http_ok(f"http://127.0.0.1:{ports.champion}/health"), 120)
        self.say(f"v{champion} serving on 127.0.0.1:{ports.champion} (the scoring server)")
        self._add(
            start_haproxy(
                self.workdir,
                ports.haproxy_runtime,
                configs.haproxy_config(
                    port=ports.haproxy,
                    runtime_port=ports.haproxy_runtime,
                    champion_port=ports.champion,
                ),
            )
        )
        self.say(f"HAProxy on 127.0.0.1:{ports.haproxy}: all traffic to v{champion}")
        self.prometheus_url = f"http://127.0.0.1:{ports.prometheus}"
        self._add(
            start_prometheus(
                self.workdir,
                ports.prometheus,
                configs.prometheus_config([ports.champion, *ports.server_ports]),
            )
        )
        self.say(f"Prometheus on {self.prometheus_url}, scraping every model server each second")

    def _start_daemon(self, ports: _Ports) -> None:
        self.slack = SlackSink(ports.slack, on_message=self._on_slack).start()
        policies = self.workdir / "policies"
        policies.mkdir(parents=True, exist_ok=True)
        policy = configs.demo_policy(
            model=MODEL,
            python=sys.executable,
            runtime_port=ports.haproxy_runtime,
            first_port=ports.first_server,
            last_port=ports.server_ports[-1],
        )
        (policies / f"{MODEL}.yaml").write_text(configs.policy_yaml(policy))
        token = secrets.token_urlsafe(24)
        token_file = self.workdir / "api-token"
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
        self.api = f"http://127.0.0.1:{ports.api}"
        env = {
            "CANARY_POLICIES": str(policies),
            "CANARY_STATE_DIR": str(self.workdir / "state"),
            "CANARY_MLFLOW_TRACKING_URI": self.mlflow_url,
            "CANARY_PROMETHEUS_URL": self.prometheus_url,
            "CANARY_API_PORT": str(ports.api),
            "CANARY_API_TOKEN": token,
            "CANARY_SLACK_WEBHOOK_URL": self.slack.url,
            "CANARY_REGISTRY_POLL_INTERVAL": "1s",
            "CANARY_QUERY_TIMEOUT": "3s",
            "CANARY_SHUTDOWN_GRACE": "5s",
            "CANARY_LOG_FORMAT": "json",
        }
        self.daemon = self._add(
            python_module("canary-run", "canary.cli", ["run"], self.workdir, **env).start()
        )
        self.daemon.wait_ready(lambda: http_ok(f"{self.api}/readyz"), timeout=90)
        self.say(
            f"canary daemon running with policy {policies / (MODEL + '.yaml')}; status page "
            f"{self.api}/status"
        )
        self.detail(
            "the policy: steps 10% -> 25% -> 50%, a tick every second, alpha 0.05; errors, "
            "latency, accuracy per group (labels 2 s late), four-fifths rule on approvals"
        )

    def _start_traffic(self, data: DemoData, ports: _Ports) -> None:
        self.traffic = LiveTraffic(
            f"http://127.0.0.1:{ports.haproxy}/",
            data.live,
            rps=self.options.rps,
            workers=6,
            seed=self.options.seed,
        )
        self.traffic.start()
        self.say(
            f"live traffic: {self.options.rps:g} applications a second through HAProxy, each "
            "with its true outcome (counted 2 s later)"
        )
        query = f'sum(model_requests_total{{model="{MODEL}"}})'

        def prometheus_has_data() -> bool:
            try:
                answer = httpx.get(
                    f"{self.prometheus_url}/api/v1/query", params={"query": query}, timeout=2
                ).json()
            except (httpx.HTTPError, ValueError):
                return False
            result = answer.get("data", {}).get("result", [])
            return bool(result) and float(result[0]["value"][1]) > 0

        wait_until(prometheus_has_data, timeout=90, what="Prometheus saw no model traffic")

    def _rollout(self, version: str, story: str) -> dict[str, Any]:
        """Ask for a rollout of ``version`` and follow it to its end; its final detail."""
        since = time.time()
        registry.set_alias(self.mlflow_url, MODEL, "challenger", version)
        self.say(f"challenger -> v{version} ({story})")
        deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
        rollout_id: str | None = None
        last_progress = time.monotonic()
        while True:
            self._check_services()
            if rollout_id is None:
                for summary in self._rollouts():
                    if str(summary["version"]) == version and summary["created_at"] >= since - 5:
                        rollout_id = str(summary["id"])
                        detail = self._get(f"/rollouts/{rollout_id}")
                        self.say(f"rollout {rollout_id} of v{version} started")
                        if detail.get("lineage"):
                            self.detail(f"lineage: {detail['lineage']}")
            if rollout_id is not None:
                seen = self._seen.get(rollout_id, 0)
                detail = self._print_history(rollout_id, version)
                if self._seen[rollout_id] != seen:
                    last_progress = time.monotonic()  # a new step: its evidence comes later
                if detail["phase"] in TERMINAL:
                    for breach in detail.get("breaches", []):
                        self.detail(breach_line(breach))
                    return detail
                stepping = detail["phase"] in ("progressing", "paused")
                if stepping and time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                    line = progress_line(detail)
                    if line:
                        self.detail(line)
                    last_progress = time.monotonic()
            if time.monotonic() > deadline:
                raise DemoError(
                    f"v{version}: no decision after {ROLLOUT_TIMEOUT_S:.0f}s; see "
                    f"{self.workdir / 'canary-run.log'}"
                )
            time.sleep(0.5)

    def _report(self, result: DemoResult) -> None:
        if self.traffic is not None:
            stats = self.traffic.stats()
            answered = ", ".join(f"v{v} {n:,}" for v, n in sorted(stats.by_version.items()))
            self.say(
                f"traffic so far: {stats.sent:,} requests ({stats.failed:,} failed: an "
                f"employment type no version was trained on); answered by {answered}"
            )
        if self.slack is not None:
            self.say(f"Slack stand-in received {len(self.slack.messages())} messages")
        if result.ok:
            self.say(
                "outcome: the model trained on more data was promoted; the one trained on "
                f"data without group {HARMED_GROUP} was rolled back for that group"
            )
        else:
            for problem in result.problems:
                self.say(f"unexpected: {problem}")

    # --- helpers -------------------------------------------------------------------------

    def _add(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def _check_services(self) -> None:
        for service in self.services:
            if not service.running:
                raise DemoError(
                    f"{service.name} exited with code {service.returncode}; end of "
                    f"{service.log_path}:\n{service.log_tail()}"
                )

    def _get(self, path: str, **params: str) -> Any:
        try:
            response = httpx.get(f"{self.api}{path}", params=params, timeout=10)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPError as exc:
            raise DemoError(f"the daemon's API did not answer {path}: {exc}") from exc

    def _rollouts(self) -> list[dict[str, Any]]:
        return list(self._get("/rollouts", model=MODEL))

    def _print_history(self, rollout_id: str, version: str) -> dict[str, Any]:
        detail: dict[str, Any] = self._get(f"/rollouts/{rollout_id}")
        history = detail.get("history", [])
        for point in history[self._seen.get(rollout_id, 0) :]:
            self.say(transition_line(version, point))
        self._seen[rollout_id] = len(history)
        return detail

    def _on_slack(self, text: str) -> None:
        self.detail(clip(f"slack: {headline(text)}"))

    def close(self) -> None:
        """Stop everything, newest first; the daemon's own model servers after the daemon."""
        if self.traffic is not None:
            self.traffic.request_stop()
            self.traffic.stop(timeout=10)
        for service in reversed(self.services):
            service.stop()
            if service is self.daemon:
                _stop_daemon_servers(self.workdir / "state" / "servers")
        if self.slack is not None:
            self.slack.stop()


def _stop_daemon_servers(folder: Path) -> None:
    """Stop the scoring servers the daemon started: it leaves them running when it exits
    (one of them is the champion by then), as a controller in production must."""
    stop_recorded_servers(folder, command_contains=b"canary.demo.scoring_server")


def run_scenario(
    options: DemoOptions,
    timeline: Timeline,
    *,
    keep_running: bool,
    before_close: Callable[[], None] | None = None,
) -> DemoResult:
    """Run the demo; with ``keep_running`` wait for Ctrl-C before stopping everything."""
    demo = Demo(options, timeline)
    try:
        result = demo.run()
        if keep_running:
            with contextlib.suppress(KeyboardInterrupt):
                demo.keep_running()
        return result
    finally:
        if before_close is not None:
            before_close()
        demo.close()
