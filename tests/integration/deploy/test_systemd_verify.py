"""systemd itself reads the unit: ``systemd-analyze verify`` (with the drop-ins) and
``systemd-analyze security``. Runs where systemd-analyze is installed; skipped elsewhere.

The unit's ExecStart names the installed venv (/opt/canary), which does not exist on a test
machine, and verify refuses a missing executable; the copy checked here points ExecStart at
this checkout's ``canary`` instead. Nothing else is changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SYSTEMD = ROOT / "deploy/systemd"
INSTALLED = "ExecStart=/opt/canary/bin/canary run"


@pytest.fixture
def analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed")
    return binary


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    text = (SYSTEMD / "canary.service").read_text()
    assert text.count(INSTALLED) == 1
    canary = Path(sys.executable).parent / "canary"
    assert canary.exists()
    unit = tmp_path / "canary.service"
    unit.write_text(text.replace(INSTALLED, f"ExecStart={canary} run"))
    shutil.copytree(SYSTEMD / "canary.service.d", tmp_path / "canary.service.d")
    return unit


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_systemd_accepts_the_unit_and_its_drop_ins(analyze, unit_copy):
    done = run([analyze, "verify", str(unit_copy)])
    assert done.returncode == 0, done.stderr
    # verify exits 0 even for unknown keys; it says so on its output.
    assert (done.stdout + done.stderr).strip() == ""


def test_verify_would_catch_a_mistake(analyze, unit_copy):
    drop_in = unit_copy.parent / "canary.service.d" / "nginx.conf"
    drop_in.write_text(drop_in.read_text() + "ReadWritePath=/typo\n")
    done = run([analyze, "verify", str(unit_copy)])
    assert "Unknown key 'ReadWritePath'" in done.stderr


def test_exposure_is_low(analyze, unit_copy):
    done = run([analyze, "security", "--offline=true", str(unit_copy)])
    assert done.returncode == 0, done.stderr
    match = re.search(r"Overall exposure level for canary\.service: ([0-9.]+)", done.stdout)
    assert match is not None, done.stdout[-2000:]
    assert float(match.group(1)) <= 2.5
