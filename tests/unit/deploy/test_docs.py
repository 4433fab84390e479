"""The documentation tells the truth: its reference tables, names and links match the code.

A renamed metric, a new setting, a new API route or a moved file fails here, so the docs are
fixed in the same change.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from canary.core.policy_reference import markdown
from canary.service.api import create_app
from canary.service.status_page import add_status_page
from canary.service.telemetry import Telemetry
from canary.settings import Settings
from tests.unit.deploy.test_observability import exported_names
from tests.unit.service.test_controller import World

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
MINE = ["getting-started.md", "policy.md", "operating.md", "record-replay.md"]


def test_policy_reference_is_the_schema_s():
    text = (DOCS / "policy.md").read_text()
    start = text.index("<!-- policy-reference:start -->\n") + len(
        "<!-- policy-reference:start -->\n"
    )
    end = text.index("<!-- policy-reference:end -->")
    assert text[start:end] == markdown(), "run: canary schema --markdown, paste into docs/policy.md"


def test_operating_names_every_metric_setting_and_route(tmp_path):
    text = (DOCS / "operating.md").read_text()
    for name in exported_names(Telemetry()):
        if name.endswith(("_bucket", "_sum", "_count")):
            continue
        assert f"`{name}`" in text, name
    for field in Settings.model_fields:
        assert f"`CANARY_{field.upper()}`" in text, field
    world = World(tmp_path, {"1": 0.01})
    app = create_app(
        world.controller,
        token=SecretStr("x" * 20),
        metrics_registry=world.ctx.telemetry.registry,
        ready=lambda: (True, "ready"),
        extra_routes=add_status_page(world.controller),
    )
    for route in app.routes:
        path = getattr(route, "path", "")
        if path in ("/", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            continue
        assert f" {path}`" in text, path


@pytest.mark.parametrize("name", MINE)
def test_links_and_paths_resolve(name):
    text = (DOCS / name).read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (DOCS / target).is_file(), f"{name}: broken link {target}"
    for path in re.findall(r"`((?:deploy|config|scripts|benchmarks)/[^`\s*]+)`", text):
        assert (ROOT / path).exists(), f"{name}: {path} does not exist"


@pytest.mark.parametrize(
    "path",
    [*(DOCS / n for n in MINE), ROOT / "Dockerfile", *sorted((ROOT / "deploy").rglob("*"))],
)
def test_no_machine_specific_paths(path):
    if path.is_dir():
        return
    text = path.read_text()
    assert "/work/" not in text
    assert "/tmp/pytest" not in text
