"""Hostile names from the registry and in policies, against real MLflow, Prometheus, HAProxy.

Why: model names, aliases, tags, descriptions and run names are free text in MLflow, typed
by anyone who can register a model; policy fields are typed by people too. canary turns some
of that text into PromQL, HAProxy runtime commands, MLflow search filters, file names and
argv, where a quote, a brace, a newline or a semicolon would change what the text means.
These tests register such values in a real MLflow and drive the real registry, controller,
Prometheus source and HAProxy router, then read what actually reached each system: the
query log of a Prometheus of this module's own, HAProxy's ``show servers state`` and config
file, the state folder. They prove that

- a hostile value that canary would use is refused with an error that shows it
  repr-escaped, and no rollout starts;
- hostile values that canary only carries as data (run names, dataset names, descriptions,
  tags it does not match on) never reach a query, the proxy, a file name or a command line;
- valid but unusual names (dots, dashes, underscores, digits, the longest allowed) still
  work end to end.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import SecretStr
from structlog.testing import capture_logs

from canary.cli import main
from canary.core.lifecycle import Phase
from canary.core.policy import Policy
from canary.errors import PolicyError
from canary.metrics.prometheus import HttpQueryClient, PrometheusSource
from canary.registry.mlflow import MlflowRegistry
from canary.service.api import create_app
from canary.service.controller import Controller
from canary.service.evidence import EvidenceCache
from canary.service.policies import PolicySet
from canary.service.status_page import add_status_page
from canary.service.tick import TickContext
from canary.serving.factory import make_serving
from canary.store.sql import SqlStore
from canary.traffic.factory import router_for
from tests.harness.backends import BackendPair
from tests.harness.haproxy import HAProxyInstance, runtime_command
from tests.harness.mlflow_server import DatasetSpec, MlflowServer
from tests.harness.proc import ManagedProcess, free_port, http_ok, require_binary, wait_until
from tests.unit.fuzz.hostile import HOSTILE

pytestmark = pytest.mark.integration

# Fragments of HOSTILE that must never show up in what canary sends anywhere.
MARKERS = (
    "vector(1)",
    "drop table",
    '=~".*"',
    "set weight",
    "set server",
    "../",
    "$(touch",
    "<script>",
    "X-Injected",
    "}{",
    "#comment",
    "\x00",
    "\u2028",
)


# --- a Prometheus of this module's own, with its query log on ------------------------------


@dataclass
class LoggedPrometheus:
    url: str
    query_log: Path

    def queries(self) -> list[str]:
        """Every query Prometheus evaluated so far (its query log, one JSON object a line)."""
        if not self.query_log.exists():
            return []
        out = []
        for line in self.query_log.read_text(errors="replace").splitlines():
            if line.strip():
                out.append(str(json.loads(line)["params"]["query"]))
        return out


@pytest.fixture(scope="module")
def logged_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedPrometheus]:
    """Prometheus with ``global.query_log_file`` set: the proof of what canary asked it."""
    binary = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus-query-log")
    port = free_port()
    query_log = workdir / "queries.log"
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "query_log_file": str(query_log)},
                "scrape_configs": [],
            }
        )
    )
    process = ManagedProcess(
        name="prometheus-query-log",
        argv=[
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        workdir=workdir,
    )
    process.start()
    try:
        url = f"http://127.0.0.1:{port}"
        process.wait_ready(lambda: http_ok(f"{url}/-/ready"), timeout=30)
        yield LoggedPrometheus(url, query_log)
    finally:
        process.stop()


# --- one isolated world per test ------------------------------------------------------------


@dataclass
class World:
    """The controller wired to the real MLflow, Prometheus and HAProxy of this test."""

    state_dir: Path
    policies_dir: Path
    mlflow: MlflowServer
    prometheus: LoggedPrometheus
    haproxy: HAProxyInstance
    canary_address: str
    store: SqlStore | None = None
    controller: Controller | None = None

    def policy(self, name: str, fields: dict[str, Any]) -> Path:
        path = self.policies_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(fields, sort_keys=False, allow_unicode=True))
        return path

    def start(self) -> Controller:
        """Load the policies (raises PolicyError) and wire the controller."""
        policies = PolicySet(self.policies_dir)
        policies.load()
        self.store = SqlStore(f"sqlite:///{self.state_dir / 'canary.db'}")
        ctx = TickContext(
            store=self.store,
            registry=MlflowRegistry(self.mlflow.url, timeout=10),
            metrics=PrometheusSource(HttpQueryClient(self.prometheus.url, timeout=5)),
            outbox=None,
            router_for=lambda p: router_for(p.router),
            serving_for=lambda p: make_serving(p.serving, self.state_dir / "servers"),
            evidence=EvidenceCache(self.store),
        )
        self.controller = Controller(ctx, policies)
        return self.controller

    def servers_state(self) -> str:
        return runtime_command(self.haproxy, f"show servers state {self.haproxy.backend}")


@pytest.fixture
def world_factory(
    tmp_path: Path,
    mlflow_server: MlflowServer,
    logged_prometheus: LoggedPrometheus,
    haproxy_factory: Callable[..., HAProxyInstance],
    name_backends: BackendPair,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str, str], World]]:
    """Worlds whose HAProxy has backend ``backend`` with server ``champion`` on the blue
    backend; the canary's address is the green one."""
    # MlflowRegistry sets MLflow's process-wide HTTP settings; restore them after the test.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    built: list[World] = []

    def build(backend: str, champion: str) -> World:
        haproxy = haproxy_factory({champion: name_backends.blue.address}, backend=backend)
        root = tmp_path / f"world{len(built)}"
        (root / "policies").mkdir(parents=True)
        (root / "state").mkdir()
        world = World(
            state_dir=root / "state",
            policies_dir=root / "policies",
            mlflow=mlflow_server,
            prometheus=logged_prometheus,
            haproxy=haproxy,
            canary_address=name_backends.green.address,
        )
        built.append(world)
        return world

    yield build
    for world in built:
        if world.store is not None:
            world.store.close()


@pytest.fixture
def world(world_factory: Callable[[str, str], World]) -> World:
    return world_factory("app", "champion")


def policy_fields(world: World, model: str, **overrides: Any) -> dict[str, Any]:
    """A valid policy for ``model`` on this world's HAProxy (fields as YAML would hold them)."""
    fields: dict[str, Any] = {
        "model": model,
        "trigger": {"alias": "challenger"},
        "champion_alias": "champion",
        "serving": {"address": world.canary_address},
        "router": {
            "type": "haproxy",
            "runtime_api": world.haproxy.runtime_tcp,
            "backend": world.haproxy.backend,
        },
        "steps": [{"weight": 10}, {"weight": 50}],
        "analysis": {
            "interval": "1s",
            "metrics": [
                {
                    "name": "errors",
                    "kind": "ratio",
                    "events": 'model_requests_total{code=~"5.."}',
                    "total": "model_requests_total",
                    "worse_when": "higher",
                }
            ],
        },
    }
    fields.update(overrides)
    return fields


def register(
    mlflow: MlflowServer,
    model: str,
    aliases: tuple[str, ...] = (),
    tags: dict[str, str] | None = None,
    **run: Any,
) -> str:
    """A version of ``model``; with ``run_name``/``datasets`` given, on a run that has them
    (all may be hostile), else with no run at all (fewer calls: MLflow is slow to write)."""
    client = mlflow.client()
    try:
        client.get_registered_model(model)
    except Exception:
        client.create_registered_model(model)
    if run:
        run_id = mlflow.log_run({"accuracy": 0.9}, run.get("datasets", ()), run.get("run_name"))
        version = client.create_model_version(
            model, source=f"runs:/{run_id}/model", run_id=run_id, tags=tags or {}
        )
    else:
        version = client.create_model_version(model, source="s3://models/m", tags=tags or {})
    number = str(version.version)
    if run.get("description"):
        client.update_model_version(model, number, description=run["description"])
    for alias in aliases:
        client.set_registered_model_alias(model, alias, number)
    return number


def assert_nothing_leaked(world: World, since: int = 0) -> None:
    """No hostile fragment in the queries Prometheus ran, in HAProxy, or in a file name."""
    for query in world.prometheus.queries()[since:]:
        for marker in MARKERS:
            assert marker not in query, f"{marker!r} reached Prometheus: {query!r}"
    state = world.servers_state()
    config = (world.haproxy.workdir / "haproxy.cfg").read_text()
    for marker in MARKERS:
        assert marker not in state, f"{marker!r} reached HAProxy's runtime state"
        assert marker not in config, f"{marker!r} reached HAProxy's config"
    for path in world.state_dir.rglob("*"):
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+", path.name), f"unexpected file {path}"


def assert_one_line_naming(problems: list[str], value: str) -> None:
    assert any(repr(value) in p for p in problems), (value, problems)
    for problem in problems:
        assert not any(c in problem for c in "\n\r\x00"), problem


# --- (c) valid but unusual names work end to end ----------------------------------------


def test_unusual_valid_names_work_end_to_end(
    world_factory: Callable[[str, str], World],
) -> None:
    """Dots, dashes, underscores and digits in every name: the model, both aliases, the
    HAProxy backend and servers, the version label. The rollout starts, HAProxy carries the
    canary at the step's weight, Prometheus gets well-formed queries, MLflow gets the tags,
    and an abort takes the canary out again."""
    world = world_factory("fraud.score-v2_be", "champ.v1-a_0")
    model = f"9.Fraud.Score-v2_0.{uuid.uuid4().hex[:8]}"
    champion_alias, trigger_alias = "champ-ion_1", "chal_lenger-2"
    register(world.mlflow, model, (champion_alias,))
    candidate = register(world.mlflow, model, (trigger_alias,))
    world.policy(
        "unusual",
        policy_fields(
            world,
            model,
            trigger={"alias": trigger_alias},
            champion_alias=champion_alias,
            router={
                "type": "haproxy",
                "runtime_api": world.haproxy.runtime_tcp,
                "backend": "fraud.score-v2_be",
                "champion_server": "champ.v1-a_0",
                "canary_server": "canary.v2-b_1",
            },
        )
        | {
            "analysis": {
                "interval": "1s",
                "version_label": "model_version",
                "metrics": [
                    {
                        "name": "errors_v2",
                        "kind": "ratio",
                        "events": f'model_requests_total{{model="{model}", code=~"5.."}}',
                        "total": f'model_requests_total{{model="{model}"}}',
                        "worse_when": "higher",
                    }
                ],
            }
        },
    )
    controller = world.start()
    (rollout,) = controller.poll_registry()
    assert rollout.model == model
    assert rollout.version == candidate
    report = controller.tick(rollout.id)
    assert report.error is None, report.error
    assert report.rollout is not None
    assert report.rollout.phase is Phase.PROGRESSING
    assert report.rollout.canary_weight == 10.0
    state = world.servers_state()
    assert re.search(rf"\bcanary\.v2-b_1 {re.escape(world.canary_address.split(':')[0])}", state)
    controller.tick(rollout.id)  # progressing: reads Prometheus
    wait_until(
        lambda: any(f'model="{model}"' in q for q in world.prometheus.queries()),
        timeout=10,
        what="canary's query in the query log",
    )
    ours = [q for q in world.prometheus.queries() if f'model="{model}"' in q]
    assert all(f'model_version=~"1|{candidate}"' in q for q in ours), ours
    version = world.mlflow.client().get_model_version(model, candidate)
    assert version.tags["canary.status"] == "in_progress"
    assert version.tags["canary.rollout_id"] == rollout.id
    aborted = controller.command(rollout.id, "abort")
    assert aborted.phase is Phase.ABORTED, aborted.reason
    assert aborted.canary_weight == 0.0
    tags = world.mlflow.client().get_model_version(model, candidate).tags
    assert tags["canary.status"] == "aborted"
    assert_nothing_leaked(world)


def test_the_longest_allowed_model_name_works(world: World) -> None:
    """128 characters, the most the policy allows: the rollout id built from it must still
    be a valid id for the registry tags and the store."""
    model = ("m" + uuid.uuid4().hex) * 4
    model = model[:128]
    register(world.mlflow, model, ("champion",))
    candidate = register(world.mlflow, model, ("challenger",))
    world.policy("long", policy_fields(world, model))
    controller = world.start()
    (rollout,) = controller.poll_registry()
    report = controller.tick(rollout.id)
    assert report.error is None, report.error
    assert report.rollout is not None
    assert report.rollout.phase is Phase.PROGRESSING
    tags = world.mlflow.client().get_model_version(model, candidate).tags
    assert tags["canary.rollout_id"] == rollout.id
    assert controller.command(rollout.id, "abort").phase is Phase.ABORTED
    assert_nothing_leaked(world)


# --- (a) hostile values canary would use are refused ---------------------------------------


def test_hostile_model_names_in_mlflow_are_refused_by_name(world: World) -> None:
    """Every hostile name MLflow itself accepts as a registered model gets versions, a
    champion and a challenger; a policy naming it is refused, showing the name
    repr-escaped, by the loader, by ``canary validate`` and by the daemon's policy set; no
    rollout starts, MLflow is not written to, and nothing reaches Prometheus or HAProxy."""
    accepted: list[str] = []
    for index, hostile in enumerate(HOSTILE):
        name = f"{hostile}{uuid.uuid4().hex[:6]}" if hostile else ""
        try:
            register(world.mlflow, name, ("champion",))
        except Exception:  # noqa: S112 - MLflow refuses it itself: nothing for canary to see
            continue
        register(world.mlflow, name, ("challenger",))
        accepted.append(name)
        world.policy(f"hostile{index}", policy_fields(world, name))
    assert len(accepted) >= 6, accepted  # quotes, braces, NUL, $(), backticks, # at least
    queries_before = len(world.prometheus.queries())
    with pytest.raises(PolicyError) as refused:
        world.start()
    for name in accepted:
        assert_one_line_naming(refused.value.problems, name)
    result = CliRunner().invoke(main, ["validate", "--quiet", str(world.policies_dir)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for name in accepted:
        assert_one_line_naming(result.stdout.splitlines(), name)
    client = world.mlflow.client()
    for name in accepted:
        for version in ("1", "2"):
            tags = client.get_model_version(name, version).tags
            assert not any(key.startswith("canary.") for key in tags), (name, tags)
    assert world.prometheus.queries()[queries_before:] == []
    assert_nothing_leaked(world)
    assert not (world.state_dir / "canary.db").exists()


@pytest.fixture(scope="module")
def shared_model(mlflow_server: MlflowServer) -> str:
    """One model for the tests that never get as far as a rollout: a champion, and a
    challenger that also holds an alias MLflow accepts but a policy cannot name."""
    model = f"m-{uuid.uuid4().hex[:10]}"
    register(mlflow_server, model, ("champion",))
    register(mlflow_server, model, ("challenger", "-rf"))
    return model


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("trigger",), {"alias": "-rf"}),  # an alias MLflow accepts
        (("trigger",), {"tag": {"key": "deploy", "value": "go' or name = 'other"}}),
        (("trigger",), {"tag": {"key": "dep`loy", "value": "go"}}),
        (("champion_alias",), "é-unicode"),  # an alias MLflow accepts
        (("router", "backend"), "app;set server app/champion state maint"),
        (("router", "canary_server"), "canary\nset weight app/champion 0"),
        (("analysis", "version_label"), 'version"} or vector(1) #'),
        (("serving", "address"), "127.0.0.1:{model}$(touch pwned)"),
    ],
)
def test_hostile_policy_fields_are_refused_by_name(
    world: World, shared_model: str, field: tuple[str, ...], value: Any
) -> None:
    """Triggers, aliases, proxy names, labels and templates that would carry the hostile
    text into an MLflow filter, a runtime command or a query: refused at load, named."""
    model = shared_model
    fields = policy_fields(world, model)
    target = fields
    for part in field[:-1]:
        target = target[part]
    target[field[-1]] = value
    world.policy("hostile", fields)
    with pytest.raises(PolicyError) as refused:
        world.start()
    shown = value if isinstance(value, str) else next(iter(_strings(value)))
    if isinstance(value, dict):
        shown = next(s for s in _strings(value) if s not in ("deploy", "go"))
    problems = refused.value.problems
    assert any(repr(shown) in p or repr(shown)[1:-1] in p for p in problems), (shown, problems)
    for problem in problems:
        assert not any(c in problem for c in "\n\r\x00"), problem
    assert not any(
        k.startswith("canary.") for k in world.mlflow.client().get_model_version(model, "2").tags
    )
    assert_nothing_leaked(world)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


def test_a_policy_that_bypassed_the_loader_is_still_refused_at_each_boundary(
    world: World, shared_model: str
) -> None:
    """Defence in depth: a Policy built without validation (as a bug in the loader would)
    still cannot put a hostile name into an MLflow filter or a HAProxy command; each
    boundary refuses it with the value repr-escaped, before anything is sent."""
    valid = Policy.model_validate(policy_fields(world, shared_model))
    registry = MlflowRegistry(world.mlflow.url, timeout=10)
    hostile_model = valid.model_copy(update={"model": "m' or name = 'x"})
    with pytest.raises(ValueError, match=re.escape(repr("m' or name = 'x"))):
        registry.candidates(hostile_model)
    trigger = valid.trigger.model_copy(update={"alias": 'c"}'})
    with pytest.raises(ValueError, match=re.escape(repr('c"}'))):
        registry.candidates(valid.model_copy(update={"trigger": trigger}))
    bad_router = valid.router.model_copy(update={"backend": "app\nset weight app/champion 0"})
    with pytest.raises(ValueError, match=re.escape(repr("app\nset weight app/champion 0"))):
        router_for(bad_router)
    assert_nothing_leaked(world)


# --- (b) hostile data canary only carries never reaches a sink ----------------------------


def test_hostile_registry_data_is_carried_as_data_only(world: World) -> None:
    """A candidate whose run name, datasets, description and extra tags are hostile, and
    hostile aliases MLflow accepts on the model: the rollout starts (none of that text is
    used to route or query), the hostile aliases are ignored with a warning, and the text
    is kept verbatim as data (the API returns it) but escaped on the status page, while
    nothing reaches Prometheus, HAProxy or the file system."""
    model = f"m-{uuid.uuid4().hex[:10]}"
    hostile = [h for h in HOSTILE if h]
    register(world.mlflow, model, ("champion",))
    register(
        world.mlflow,
        model,
        ("-rf", "é-unicode"),  # hostile aliases MLflow accepts; the policy cannot name them
        tags={"deploy": "go' or name = 'x", **{f"note{i}": h for i, h in enumerate(hostile)}},
    )
    candidate = register(
        world.mlflow,
        model,
        tags={"deploy": "go", "canary.status": "promoted\nforged", "x": HOSTILE[0]},
        run_name="run <script>alert(1)</script> $(touch pwned)",
        description="; set weight app/champion 0\n../../etc/passwd",
        datasets=[
            DatasetSpec(name="../../etc/passwd", digest='d"}{', source="$(touch pwned)"),
            DatasetSpec(name="<script>alert(1)</script>", digest="x", source="m\u2028ok"),
        ],
    )
    world.policy(
        "data", policy_fields(world, model, trigger={"tag": {"key": "deploy", "value": "go"}})
    )
    controller = world.start()
    queries_before = len(world.prometheus.queries())
    with capture_logs() as logs:
        (rollout,) = controller.poll_registry()
    assert rollout.version == candidate  # not the version whose tag only looks like "go"
    ignored = {e["alias"] for e in logs if e["event"] == "registry.alias_ignored"}
    assert {"-rf", "é-unicode"} <= ignored
    for _ in range(3):
        report = controller.tick(rollout.id)
        assert report.error is None, report.error
    assert report.rollout is not None
    assert report.rollout.phase is Phase.PROGRESSING
    wait_until(
        lambda: len(world.prometheus.queries()) > queries_before,
        timeout=10,
        what="the tick's query in the query log",
    )
    assert_nothing_leaked(world, since=queries_before)
    app = create_app(
        controller,
        token=SecretStr("t" * 24),
        metrics_registry=controller.ctx.telemetry.registry,
        ready=lambda: (True, "ready"),
        extra_routes=add_status_page(controller),
    )
    client = TestClient(app)
    detail = client.get(f"/rollouts/{rollout.id}").json()
    assert "run <script>alert(1)</script> $(touch pwned)" in detail["lineage"]
    assert "../../etc/passwd" in detail["lineage"]
    page = client.get(f"/status/{rollout.id}").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert controller.command(rollout.id, "abort").phase is Phase.ABORTED
    assert_nothing_leaked(world)


def test_the_query_log_sees_what_canary_sends(logged_prometheus: LoggedPrometheus) -> None:
    """The instrument itself: a query sent to this Prometheus shows up in its query log,
    so an empty log in the tests above means nothing was sent, not that nothing is seen."""
    marker = f"canary_probe_{uuid.uuid4().hex[:8]}"
    httpx.get(f"{logged_prometheus.url}/api/v1/query", params={"query": marker}, timeout=10)
    deadline = time.monotonic() + 10
    while marker not in " ".join(logged_prometheus.queries()):
        assert time.monotonic() < deadline, "query log never showed the probe"
        time.sleep(0.1)
