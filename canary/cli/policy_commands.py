"""``canary validate``, ``canary schema`` and ``canary settings``: checks that need no server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from canary.cli import main
from canary.core.policy import policy_json_schema
from canary.core.policy_loader import load_policy, policy_files
from canary.errors import PolicyError, SettingsError


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="Print only problems, not the valid files.")
def validate(paths: tuple[Path, ...], quiet: bool) -> None:
    """Check rollout policies: every FILE, and every *.yaml / *.yml in every DIR.

    Prints one line per problem as `file:line:column: field.path: what is wrong` and exits 1
    if any policy is invalid, 0 if all are valid. Nothing is contacted: this is safe in CI.
    """
    files = policy_files(paths)
    if not files:
        click.echo(f"no policy files (*.yaml, *.yml) in {', '.join(map(str, paths))}", err=True)
        sys.exit(1)
    failed = 0
    for path in files:
        if not path.exists():
            click.echo(f"{path}:0:0: file not found")
            failed += 1
            continue
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            failed += 1
            for problem in exc.problems:
                click.echo(problem)
            continue
        if not quiet:
            click.echo(
                f"{path}: ok (model {policy.model}, {len(policy.steps)} steps, "
                f"{len(policy.all_analysis_names())} checks)"
            )
    total = len(files)
    if failed:
        click.echo(f"{failed} of {total} policies invalid", err=True)
        sys.exit(1)
    if not quiet:
        click.echo(f"{total} {'policy' if total == 1 else 'policies'} valid", err=True)


@main.command()
@click.option("--indent", default=2, show_default=True, help="JSON indentation.")
@click.option(
    "--markdown", is_flag=True, help="Print the field reference as a Markdown table instead."
)
def schema(indent: int, markdown: bool) -> None:
    """Print the JSON Schema of a rollout policy.

    Point your editor's YAML language server at it to get completion and checks, e.g. a
    first line `# yaml-language-server: $schema=canary-policy.schema.json`.
    """
    if markdown:
        from canary.core.policy_reference import markdown as reference

        click.echo(reference(), nl=False)
        return
    click.echo(json.dumps(policy_json_schema(), indent=indent, sort_keys=False))


@main.command("settings")
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(path_type=Path),
    help="YAML settings file (default: $CANARY_SETTINGS_FILE, then the environment only).",
)
def show_settings(settings_file: Path | None) -> None:
    """Print the effective service settings (secrets shown only as set/unset)."""
    from canary.settings import load_settings

    try:
        settings = load_settings(settings_file)
    except SettingsError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(json.dumps(settings.public(), indent=2))
