"""The Dockerfile, read: two stages, a slim non-root runtime, the right probe and entrypoint.

Building it needs a container engine; ``tests/integration/deploy/test_docker_build.py`` runs
its build steps in a fresh virtualenv instead. This file checks what reading can check.
"""

from __future__ import annotations

import re
from pathlib import Path

from canary.settings import Settings
from tests.unit.deploy.dockerfile import context_files, stages

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()


def test_two_stages_on_the_same_slim_python():
    build, runtime = stages(DOCKERFILE)
    assert (build.name, runtime.name) == ("build", "runtime")
    assert build.base == runtime.base  # the venv's interpreter link stays valid
    assert re.fullmatch(r"python:3\.1[1-9]-slim", runtime.base)


def test_the_runtime_installs_nothing_itself_and_has_no_dev_extra():
    _, runtime = stages(DOCKERFILE)
    for run in runtime.all("RUN"):
        assert "pip" not in run.arguments
    copies = [c.arguments.split() for c in runtime.all("COPY")]
    assert copies == [["--from=build", "/opt/canary", "/opt/canary"]]
    assert "[dev]" not in DOCKERFILE
    assert "mlflow-skinny" in DOCKERFILE  # says why full mlflow is absent


def test_runs_as_a_numeric_non_root_user():
    _, runtime = stages(DOCKERFILE)
    (user,) = runtime.all("USER")
    uid, _, gid = user.arguments.partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0
    assert f"--uid {uid}" in DOCKERFILE


def test_port_probe_and_entrypoint_agree_with_the_settings():
    _, runtime = stages(DOCKERFILE)
    env = runtime.env()
    (expose,) = runtime.all("EXPOSE")
    assert expose.arguments == env["CANARY_API_PORT"]
    (health,) = runtime.all("HEALTHCHECK")
    command = health.arguments.split(" CMD ", 1)[1]
    assert "http://127.0.0.1:" in command
    assert "/healthz" in command
    assert "CANARY_API_PORT" in command
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert entrypoint.exec_form() == ["canary", "run"]
    assert env["PATH"].startswith("/opt/canary/bin:")
    (volume,) = runtime.all("VOLUME")
    assert volume.exec_form() == [env["CANARY_STATE_DIR"]]
    # Every CANARY_ variable set is a real setting, so a typo cannot pass unnoticed.
    fields = {f"CANARY_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("CANARY_")} <= fields


def test_the_build_context_is_only_what_builds_the_wheel():
    files = context_files(ROOT, DOCKERIGNORE)
    top = {f.split("/", 1)[0] for f in files}
    assert top == {"pyproject.toml", "README.md", "canary"}
    assert "canary/cli/__main__.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    build, _ = stages(DOCKERFILE)
    sources = {c.arguments.split()[0] for c in build.all("COPY")}
    sources |= {s for c in build.all("COPY") for s in c.arguments.split()[:-1]}
    assert sources <= top
