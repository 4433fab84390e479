"""The ``canary`` command. Each subcommand lives in its own module in this package."""

from __future__ import annotations

import click

from canary import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="canary")
def main() -> None:
    """canary: take new ML model versions from an MLflow registry to production safely.

    It shifts a growing share of live traffic to a new version through a proxy (HAProxy,
    nginx, Envoy), watches live metrics in Prometheus with anytime-valid sequential tests,
    overall and per fairness slice, and promotes the version or rolls it back.
    """


def _register() -> None:
    # Imported here so each command module can import `main` without a cycle.
    from canary.cli import (  # noqa: F401
        daemon_commands,
        demo,
        policy_commands,
        replay,
    )


_register()
