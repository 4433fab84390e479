"""``canary run`` (the daemon) and the commands that talk to a running one over HTTP.

``status``, ``pause``, ``resume``, ``promote`` and ``abort`` use the daemon's HTTP API
(``--url``, default the settings' API address) so they work wherever the API is reachable and
always see what the daemon sees. State-changing commands send ``CANARY_API_TOKEN``.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx

from canary.cli import main
from canary.errors import CanaryError, PolicyError, SettingsError, StoreError

settings_option = click.option(
    "--settings",
    "settings_file",
    type=click.Path(path_type=Path),
    help="YAML settings file (default: $CANARY_SETTINGS_FILE, then the environment only).",
)


def _settings(settings_file: Path | None, **overrides: Any) -> Any:
    from canary.settings import load_settings

    try:
        return load_settings(settings_file, **{k: v for k, v in overrides.items() if v})
    except SettingsError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


@main.command()
@settings_option
@click.option("--policies", type=click.Path(path_type=Path), help="Policy file or folder.")
@click.option("--state-dir", type=click.Path(path_type=Path), help="State directory.")
def run(settings_file: Path | None, policies: Path | None, state_dir: Path | None) -> None:
    """Run the controller daemon until SIGTERM.

    Watches the registry, runs every active rollout's ticks, serves the HTTP API and the
    status page. SIGTERM lets running ticks finish, then exits; SIGHUP reloads the policies
    (an invalid file is reported and the old policies stay in force).
    """
    from canary import log
    from canary.service.daemon import Daemon
    from canary.service.policies import PolicySet
    from canary.service.wiring import build_runtime

    settings = _settings(settings_file, policies=policies, state_dir=state_dir)
    log.configure(settings.log_level, settings.log_format)
    logger = log.get_logger("canary.run")
    logger.info("daemon.starting", settings=settings.public())
    policy_set = PolicySet(settings.policies)
    try:
        policy_set.load()
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        logger.error("policy.invalid", problems=exc.problems)
        sys.exit(1)
    try:
        _check_state_dir(settings.state_dir)
        base = f"http://{settings.api_host}:{settings.api_port}"
        runtime = build_runtime(settings, status_url=lambda rid: f"{base}/status/{rid}")
    except (StoreError, OSError) as exc:
        click.echo(f"canary: cannot use state directory {settings.state_dir}: {exc}", err=True)
        logger.error("daemon.state_unusable", error=str(exc))
        sys.exit(1)
    daemon = Daemon(settings, runtime, policy_set)
    try:
        status = daemon.run()
    except CanaryError as exc:
        click.echo(f"canary: {exc}", err=True)
        runtime.close()
        sys.exit(1)
    sys.exit(status)


def _check_state_dir(path: Path) -> None:
    """Fail at start, with a clear message, if the state directory cannot be written."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        os.fsync(os.open(probe, os.O_RDONLY))
    finally:
        probe.unlink(missing_ok=True)


# --- the client commands ---------------------------------------------------------------------

url_option = click.option(
    "--url", envvar="CANARY_URL", help="Daemon API URL (default: from the settings)."
)


def _base_url(url: str | None, settings_file: Path | None) -> str:
    if url:
        return url.rstrip("/")
    settings = _settings(settings_file)
    return f"http://{settings.api_host}:{settings.api_port}"


def _request(method: str, url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        click.echo(f"canary: cannot reach the daemon at {url}: {type(exc).__name__}", err=True)
        sys.exit(2)
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        click.echo(f"canary: {response.status_code}: {detail}", err=True)
        sys.exit(1)
    return response.json()


def _age(at: float) -> str:
    if not at:
        return "-"
    seconds = max(0.0, time.time() - at)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


@main.command()
@click.argument("rollout_id", required=False)
@click.option("--all", "show_all", is_flag=True, help="Include finished rollouts.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@url_option
@settings_option
def status(
    rollout_id: str | None,
    show_all: bool,
    as_json: bool,
    url: str | None,
    settings_file: Path | None,
) -> None:
    """Show rollouts (active ones by default), or one rollout with its evidence."""
    import json

    base = _base_url(url, settings_file)
    if rollout_id is None:
        query = "" if show_all else "?active=true"
        data = _request("GET", f"{base}/rollouts{query}")
        if as_json:
            click.echo(json.dumps(data, indent=2))
            return
        if not data:
            click.echo("no active rollouts" if not show_all else "no rollouts")
            return
        rows = [["ROLLOUT", "MODEL", "VERSION", "PHASE", "STEP", "CANARY", "E-VALUE", "UPDATED"]]
        for r in data:
            e = r.get("e_value")
            rows.append(
                [
                    r["id"],
                    r["model"],
                    f"v{r['version']} (champion v{r['champion_version'] or '-'})",
                    r["phase"],
                    f"{r['step'] + 1}/{r['steps']}",
                    f"{r['canary_weight']:g}%",
                    "-" if e is None else (e if isinstance(e, str) else f"{e:.3g}"),
                    _age(r["updated_at"]),
                ]
            )
        click.echo(_table(rows))
        return
    data = _request("GET", f"{base}/rollouts/{rollout_id}")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"{data['id']}: {data['model']} v{data['version']} "
        f"(champion v{data['champion_version'] or '-'})"
    )
    click.echo(
        f"  phase    {data['phase']}, step {data['step'] + 1} of {data['steps']}, "
        f"canary {data['canary_weight']:g}%"
    )
    click.echo(f"  why      {data['reason']}")
    if data.get("lineage"):
        click.echo(f"  lineage  {data['lineage']}")
    if data["metrics"]:
        threshold = data.get("threshold")
        click.echo(f"  evidence (rollback at e-value >= {threshold:g})" if threshold else "")
        rows = [["METRIC", "STATUS", "E-VALUE", "MIN SAMPLE"]]
        for name, m in data["metrics"].items():
            e = m["e_value"]
            rows.append(
                [
                    name,
                    m["status"],
                    "-" if e is None else (e if isinstance(e, str) else f"{e:.3g}"),
                    "reached" if m["enough"] else f"{100 * m['progress']:.0f}%",
                ]
            )
        click.echo("\n".join("    " + line for line in _table(rows).splitlines()))
    for b in data.get("breaches", []):
        where = b["metric"] + (f" ({b['slice']})" if b.get("slice") else "")
        click.echo(
            f"  breach   {where}: estimate {b['estimate']}, interval {b['interval']}, "
            f"e-value {b['e_value']}"
        )
    click.echo("  history")
    for h in data["history"]:
        stamp = datetime.fromtimestamp(h["at"], UTC).strftime("%H:%M:%S")
        click.echo(f"    {stamp}  {h['phase']:<13} {h['canary_weight']:>6g}%  {h['reason']}")


def _command(name: str, help_text: str) -> None:
    @main.command(name=name, help=help_text)
    @click.argument("rollout_id")
    @url_option
    @settings_option
    def command(rollout_id: str, url: str | None, settings_file: Path | None) -> None:
        token = os.environ.get("CANARY_API_TOKEN")
        if not token:
            click.echo("canary: set CANARY_API_TOKEN to the daemon's API token", err=True)
            sys.exit(2)
        base = _base_url(url, settings_file)
        data = _request("POST", f"{base}/rollouts/{rollout_id}/{name}", token=token)
        click.echo(f"{data['id']}: {data['phase']} (canary {data['canary_weight']:g}%)")


_command("pause", "Hold a rollout at its current step (a breach still rolls it back).")
_command("resume", "Continue a paused rollout.")
_command("promote", "Promote a rollout now, skipping its remaining steps.")
_command("abort", "Roll a rollout back now and end it as aborted.")


@main.command()
@click.argument("rollout_id")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="File to write (default: stdout)."
)
@click.option("--step", type=float, help="Seconds between ticks (default: the policy's interval).")
@settings_option
def record(
    rollout_id: str, output: Path | None, step: float | None, settings_file: Path | None
) -> None:
    """Write a rollout's metrics from Prometheus in the replay format.

    Reads the rollout (its versions, start and end, pinned policy) from the store, then the
    policy's series from Prometheus over that time, folded into cumulative counts exactly as
    the daemon does. Replay the result with `canary replay --policy P.yaml FILE` to backtest
    a policy on real history.
    """
    import json

    from canary.metrics.record import record_rollout
    from canary.store.sql import SqlStore

    settings = _settings(settings_file)
    try:
        store = SqlStore(settings.effective_database_url)
    except StoreError as exc:
        click.echo(f"canary: {exc}", err=True)
        sys.exit(1)
    stored = store.get(rollout_id)
    weights = [(t.at, t.canary_weight) for t in store.transitions(rollout_id)] if stored else []
    store.close()
    if stored is None:
        click.echo(
            f"canary: no rollout {rollout_id!r} in {settings.effective_database_url}", err=True
        )
        sys.exit(1)
    try:
        lines = record_rollout(
            stored.rollout,
            settings.prometheus_url,
            step=step,
            timeout=settings.query_timeout,
            weights=weights,
        )
    except CanaryError as exc:
        click.echo(f"canary: {exc}", err=True)
        sys.exit(1)
    out = output.open("w") if output else sys.stdout
    try:
        for line in lines:
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
    finally:
        if output:
            out.close()
    if output:
        click.echo(f"{len(lines)} ticks written to {output}", err=True)
