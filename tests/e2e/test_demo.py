"""The README's first command, end to end: ``canary demo --exit`` from this repository.

It runs the whole demo as a user would (real MLflow, Prometheus, HAProxy, scoring servers,
the daemon, live traffic) and checks its outcome three ways: the exit status and timeline
it prints, the daemon's store, and the MLflow registry it leaves behind. Then that nothing
it started is still running. About three minutes: the longest test of the suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from canary.core.lifecycle import Phase
from canary.store.sql import SqlStore
from tests.harness.proc import require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 600  # the demo's own budget; it takes about three minutes


def processes_in(folder: Path) -> list[str]:
    """Command lines of live processes that run in ``folder`` or name it."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = str((proc / "cwd").resolve())
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(folder) in cmdline or cwd.startswith(str(folder))):
            found.append(cmdline)
    return found


@pytest.mark.timeout(DEMO_TIMEOUT_S + 60)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # MLflow's SQLAlchemy store
def test_the_demo_promotes_v2_and_rolls_back_v3_for_group_b(tmp_path):
    require_binary("prometheus")
    require_binary("haproxy")
    workdir = (tmp_path / "demo").resolve()
    argv = [sys.executable, "-m", "canary.cli", "demo", "--exit", "--port", "0"]
    done = subprocess.run(
        [*argv, "--workdir", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    output = done.stdout
    (tmp_path / "demo-output.txt").write_text(output + done.stderr)  # for a look afterwards
    assert done.returncode == 0, output[-6000:] + done.stderr[-3000:]

    # The timeline: each decision, with the metric and group that decided the rollback.
    assert re.search(r"^\[ *[0-9.]+s\] v2 promoted +100%", output, re.MULTILINE), output
    rolled = re.search(r"^\[ *[0-9.]+s\] v3 rolled_back +0% +(.*)$", output, re.MULTILINE)
    assert rolled is not None, output
    assert "(b)" in rolled.group(1)  # e.g. "accuracy (b) regressed: ..."
    assert "status page http://127.0.0.1:" in output
    assert re.search(r"v2 progressing +10%.*\n(.*\n)*.*v2 progressing +25%", output)

    # The daemon's store agrees.
    store = SqlStore(f"sqlite:///{workdir / 'state' / 'canary.db'}")
    try:
        rollouts = {s.rollout.version: s.rollout for s in store.rollouts()}
    finally:
        store.close()
    assert set(rollouts) == {"2", "3"}
    assert rollouts["2"].phase is Phase.PROMOTED
    assert rollouts["3"].phase is Phase.ROLLED_BACK
    breaches = rollouts["3"].detail["breaches"]
    assert breaches
    assert {b["slice"] for b in breaches} == {"b"}

    # So does the registry: v2 is the champion, v3 carries the reason it was rolled back.
    from mlflow import MlflowClient

    db = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=db, registry_uri=db)
    aliases = {k: str(v) for k, v in client.get_registered_model("credit-risk").aliases.items()}
    assert aliases == {"champion": "2"}
    v2_tags = client.get_model_version("credit-risk", "2").tags
    assert v2_tags["canary.status"] == "promoted"
    assert v2_tags["canary.previous_champion"] == "1"
    v3_tags = client.get_model_version("credit-risk", "3").tags
    assert v3_tags["canary.status"] == "rolled_back"
    assert "(b)" in v3_tags["canary.reason"]

    # And nothing it started is left running.
    assert processes_in(workdir) == []
