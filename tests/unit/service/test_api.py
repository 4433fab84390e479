"""The HTTP API on a real controller (fakes only behind our own backend interfaces)."""

from __future__ import annotations

import hmac

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from canary.service.api import create_app
from canary.service.status_page import add_status_page
from tests.unit.service.test_controller import World

TOKEN = "t0ken-for-tests-0123456789"


@pytest.fixture
def world(tmp_path):
    return World(tmp_path, {"1": 0.01, "2": 0.01})


def client_for(world, token=TOKEN):
    app = create_app(
        world.controller,
        token=SecretStr(token) if token else None,
        metrics_registry=world.ctx.telemetry.registry,
        ready=lambda: (True, "ready"),
        extra_routes=add_status_page(world.controller),
    )
    return TestClient(app)


def test_read_endpoints(world):
    rollout_id = world.start()
    for _ in range(3):
        world.controller.tick(rollout_id)
        world.clock.advance(15)
    client = client_for(world)
    listed = client.get("/rollouts", params={"active": "true"}).json()
    assert [r["id"] for r in listed] == [rollout_id]
    assert listed[0]["phase"] == "progressing"
    one = client.get(f"/rollouts/{rollout_id}").json()
    assert one["canary_weight"] == 5.0
    assert [h["phase"] for h in one["history"]] == ["gating", "starting", "progressing"]
    assert "errors" in one["metrics"]
    assert one["threshold"] == pytest.approx(20.0)
    assert one["lineage"].startswith("run run-2")
    assert client.get("/rollouts/nope").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics").text
    assert "canary_tick_duration_seconds_count" in metrics
    assert 'canary_e_value{metric="errors"' in metrics


@pytest.mark.parametrize("command", ["pause", "resume", "promote", "abort"])
def test_state_changes_need_the_token(world, command):
    rollout_id = world.start()
    world.controller.tick(rollout_id)
    client = client_for(world)
    assert client.post(f"/rollouts/{rollout_id}/{command}").status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert client.post(f"/rollouts/{rollout_id}/{command}", headers=wrong).status_code == 401
    assert world.store.get(rollout_id).rollout.phase.value == "progressing"
    no_token = client_for(world, token=None)
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert no_token.post(f"/rollouts/{rollout_id}/{command}", headers=right).status_code == 403


def test_commands_with_the_token(world):
    rollout_id = world.start()
    world.controller.tick(rollout_id)
    client = client_for(world)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post(f"/rollouts/{rollout_id}/pause", headers=auth).json()["phase"] == "paused"
    conflict = client.post(f"/rollouts/{rollout_id}/pause", headers=auth)
    assert conflict.status_code == 409
    assert "cannot pause" in conflict.json()["detail"]
    aborted = client.post(f"/rollouts/{rollout_id}/abort", headers=auth).json()
    assert aborted == {
        "id": rollout_id,
        "phase": "aborted",
        "canary_weight": 0.0,
        "reason": "abort requested by api",
    }
    assert client.post("/rollouts/nope/abort", headers=auth).status_code == 404


def test_status_page_draws_the_charts(world):
    rollout_id = world.start()
    for _ in range(20):
        world.controller.tick(rollout_id)
        world.clock.advance(15)
    client = client_for(world)
    index = client.get("/status").text
    assert rollout_id in index
    page = client.get(f"/status/{rollout_id}").text
    assert page.count("<svg") == 3
    assert "polyline" in page
    assert "1/alpha = 20" in page
    assert TOKEN not in page


def test_openapi_lists_the_commands(world):
    schema = client_for(world).get("/openapi.json").json()
    for command in ("pause", "resume", "promote", "abort"):
        assert f"/rollouts/{{rollout_id}}/{command}" in schema["paths"]


def test_the_token_is_compared_in_constant_time(world, monkeypatch):
    """Every token check goes through ``hmac.compare_digest`` (whose time does not depend on
    where the first differing byte is), never through ``==``: a token that differs from the
    right one only in its last byte is refused, and the comparison seen is the constant-time
    one, with both tokens as bytes."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)  # canary.service.api uses hmac.*
    rollout_id = world.start()
    client = client_for(world)
    almost = TOKEN[:-1] + ("0" if TOKEN[-1] != "0" else "1")
    refused = client.post(
        f"/rollouts/{rollout_id}/pause", headers={"Authorization": f"Bearer {almost}"}
    )
    assert refused.status_code == 401
    assert seen == [(almost.encode(), TOKEN.encode())]


def test_a_proxy_that_lags_is_shown_in_the_api_and_on_the_status_page(world):
    rollout_id = world.start()
    world.controller.tick(rollout_id)
    stored = world.store.get(rollout_id)
    lagging = stored.rollout.replace(
        detail={**stored.rollout.detail, "router_error": "nginx -t failed: <bad> directive"}
    )
    world.store.save(lagging, expected_revision=stored.revision)
    client = client_for(world)
    assert client.get(f"/rollouts/{rollout_id}").json()["router_error"].startswith("nginx -t")
    page = client.get(f"/status/{rollout_id}").text
    assert "does not hold these weights yet: nginx -t failed: &lt;bad&gt; directive" in page
