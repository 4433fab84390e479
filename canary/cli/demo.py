"""``canary demo``: canary's main job on this machine, end to end, in one command."""

from __future__ import annotations

import importlib.util
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

import click

from canary.cli import main

NEEDS = "scikit-learn, pandas and the full mlflow package (`bash scripts/setup.sh` installs them)"


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


@main.command()
@click.option(
    "--exit",
    "exit_at_end",
    is_flag=True,
    help="Stop everything and exit once both rollouts ended: status 0 only if version 2 was "
    "promoted and version 3 rolled back for group b. Without it, everything keeps running "
    "(status page, MLflow UI, live traffic) until Ctrl-C.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Empty or new folder for every file and log of the run (default: a new folder "
    "under the system's temporary folder). It is kept afterwards.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8181,
    show_default=True,
    help="Port of the daemon's API and status page on 127.0.0.1; 0 picks a free one.",
)
def demo(exit_at_end: bool, workdir: Path | None, port: int) -> None:
    """Run a real rollout on this machine, with embedded defaults.

    \b
    It starts a real MLflow server (SQLite), trains and registers three scikit-learn
    models of a credit decision on synthetic applications from groups a and b:
      v1  the champion, trained on a data set of 1,250 applications;
      v2  retrained on 20,000 applications: it should be promoted;
      v3  retrained on 20,000 from a data set that lost almost all of group b: its own
          validation looks fine and passes the offline gate, live traffic does not.
    Each version is served by a small scoring server behind HAProxy, Prometheus scrapes
    them, and a `canary run` daemon rolls v2 out, then v3, sending live applications
    (with their true outcome, counted 2 s later) through the proxy. A timeline shows every
    step, weight change and decision; the status page shows the evidence. About three
    minutes; Prometheus and HAProxy must be installed (scripts/setup.sh).
    """
    missing = [m for m in ("sklearn", "pandas", "mlflow.sklearn") if not _installed(m)]
    if missing:
        click.echo(f"canary demo: needs {NEEDS}; missing: {', '.join(missing)}", err=True)
        sys.exit(2)

    from canary import log
    from canary.demo.scenario import DemoOptions, run_scenario
    from canary.demo.services import DemoError
    from canary.demo.timeline import Timeline

    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="canary-demo-"))
    elif workdir.exists() and any(workdir.iterdir()):
        click.echo(f"canary demo: {workdir} is not empty; give a new or empty folder", err=True)
        sys.exit(2)
    workdir.mkdir(parents=True, exist_ok=True)
    log.configure("warning", "console")
    signal.signal(signal.SIGTERM, _interrupt)
    timeline = Timeline()
    try:
        result = run_scenario(
            DemoOptions(workdir=workdir.resolve(), api_port=port),
            timeline,
            keep_running=not exit_at_end,
            before_close=lambda: timeline.say("stopping every service"),
        )
    except DemoError as exc:
        timeline.say(f"demo failed: {exc}")
        click.echo(f"canary demo: failed; logs in {workdir}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(f"canary demo: interrupted; logs in {workdir}", err=True)
        sys.exit(130)
    if not result.ok:
        click.echo(
            "canary demo: the rollouts did not end as expected: " + "; ".join(result.problems),
            err=True,
        )
        sys.exit(1)
    timeline.say(f"done; every file and log is in {workdir}")
