"""The HTTP API against its own OpenAPI document, with requests schemathesis generates.

Why: the API is what an operator's script and the status page talk to, and it is the one
door through which production traffic can be moved by hand. Three properties hold for every
request schemathesis can build from the published schema, valid or not: no answer is a 5xx
(an unhandled exception is a bug, and behind a proxy it looks like an outage), every answer
matches the schema the API publishes, and every state-changing route refuses a request
without the right bearer token. The auth cases are built from the OpenAPI document itself,
so a route added later is covered without touching this file.

The app runs on the real controller and the real SQLite store (fakes only behind our own
registry/router/serving/metrics interfaces, as in ``tests/unit/service``), with rollouts in
the store so that the detail and command routes are reached with ids that exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
)

from canary.service.api import create_app
from canary.service.status_page import add_status_page
from tests.unit.service.test_controller import World

TOKEN = "fuzz-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _app(world: World, token: str | None = TOKEN) -> FastAPI:
    return create_app(
        world.controller,
        token=SecretStr(token) if token else None,
        metrics_registry=world.ctx.telemetry.registry,
        ready=lambda: (True, "ready"),
        extra_routes=add_status_page(world.controller),
    )


def _world_with_rollouts(tmp: Path) -> tuple[World, str]:
    """A world with one progressing rollout (evidence, history) in a real SQLite store."""
    world = World(tmp, {"1": 0.01, "2": 0.01})
    rollout_id = world.start()
    for _ in range(4):
        world.controller.tick(rollout_id)
        world.clock.advance(15)
    return world, rollout_id


@pytest.fixture(scope="module")
def world_and_id(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    world, rollout_id = _world_with_rollouts(tmp_path_factory.mktemp("api-fuzz"))
    yield world, rollout_id
    world.store.close()


def _cases() -> list[tuple[str, GenerationMode]]:
    """(operation, mode) for every operation of the published document, read from an app
    with no controller behind it (building the document touches none).

    Valid requests for every operation; requests that break the schema for each operation
    that has something to break (a typed query parameter or an auth header): the probes
    take nothing, and any string is a well-formed rollout id.
    """
    app = create_app(
        cast(Any, None), token=None, metrics_registry=None, ready=lambda: (True, "ready")
    )
    document = app.openapi()
    loaded = schemathesis.openapi.from_dict(document)
    cases: list[tuple[str, GenerationMode]] = []
    for result in loaded.get_all_operations():
        operation = result.ok()
        cases.append((operation.label, GenerationMode.POSITIVE))
        spec = document["paths"][operation.path][operation.method.lower()]
        queried = any(p.get("in") == "query" for p in spec.get("parameters", []))
        if queried or spec.get("security"):
            cases.append((operation.label, GenerationMode.NEGATIVE))
    return sorted(cases)


@pytest.mark.parametrize(("label", "mode"), _cases())
def test_generated_requests_never_get_a_5xx_and_match_the_schema(
    world_and_id: tuple[World, str], label: str, mode: GenerationMode
) -> None:
    """Every operation, with generated parameters (valid ones, and ones that break the
    schema) and the valid token: no 5xx, and each answer conforms to the published schema.
    The token is sent so that the command handlers themselves are reached, not only the
    auth check in front of them."""
    world, _ = world_and_id
    operation = schemathesis.openapi.from_asgi(
        "/openapi.json", _app(world)
    ).find_operation_by_label(label)
    assert operation is not None, label
    calls: list[int] = []

    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(headers={**(case.headers or {}), **AUTH}, checks=CHECKS)
        calls.append(response.status_code)

    run()
    assert calls, label


def _operations(app: FastAPI) -> list[Any]:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in loaded.get_all_operations()]


def test_every_operation_on_an_existing_rollout_matches_the_schema(
    world_and_id: tuple[World, str],
) -> None:
    """Generated ids almost never exist: call each operation once with a real id too, so the
    detail and command answers (not only their 404s) are checked against the schema."""
    world, rollout_id = world_and_id
    seen = 0
    for operation in _operations(_app(world)):
        params = {"rollout_id": rollout_id} if "{rollout_id}" in operation.path else {}
        case = operation.Case(path_parameters=params)
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        assert response.status_code < 500
        seen += 1
    assert seen >= 7  # probes, rollouts and the four commands: the schema was read


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[World, str]]:
    world, rollout_id = _world_with_rollouts(tmp_path)
    yield world, rollout_id
    world.store.close()


def _state_changing(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every non-GET route the OpenAPI document lists."""
    paths = TestClient(app).get("/openapi.json").json()["paths"]
    return sorted(
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method.upper() in STATE_CHANGING
    )


@pytest.mark.parametrize(
    ("label", "headers", "configured", "expected"),
    [
        ("no Authorization header", {}, TOKEN, 401),
        ("a wrong token", {"Authorization": "Bearer not-the-token"}, TOKEN, 401),
        ("the token with another scheme", {"Authorization": f"Basic {TOKEN}"}, TOKEN, 401),
        ("an empty bearer", {"Authorization": "Bearer "}, TOKEN, 401),
        ("a token prefix", {"Authorization": f"Bearer {TOKEN[:-1]}"}, TOKEN, 401),
        ("a token with a suffix", {"Authorization": f"Bearer {TOKEN}x"}, TOKEN, 401),
        ("the right token but none configured", AUTH, None, 403),
    ],
)
def test_every_state_changing_route_refuses_without_the_right_token(
    fresh: tuple[World, str],
    label: str,
    headers: dict[str, str],
    configured: str | None,
    expected: int,
) -> None:
    """Each non-GET route of the OpenAPI document, on a rollout that exists: refused, and the
    rollout is left exactly as it was (same phase, same weight, same store revision)."""
    world, rollout_id = fresh
    app = _app(world, token=configured)
    routes = _state_changing(app)
    assert len(routes) >= 4, routes  # pause, resume, promote, abort at least
    client = TestClient(app)
    before = world.store.get(rollout_id)
    assert before is not None
    weights = world.router.weights
    for method, path in routes:
        url = path.replace("{rollout_id}", rollout_id)
        response = client.request(method, url, headers=headers)
        assert response.status_code == expected, (label, method, path, response.text)
        assert "detail" in response.json()
    after = world.store.get(rollout_id)
    assert after is not None
    assert after.revision == before.revision, label
    assert after.rollout.phase == before.rollout.phase
    assert world.router.weights == weights
