"""Strict patterns for names that end up in PromQL, proxy configs, paths and command lines.

Registry and policy values are untrusted text. Anything that is interpolated into a query, a
config file or an argument list must match one of these patterns first; a value that does
not is rejected, never escaped and hoped for the best.
"""

from __future__ import annotations

import re

# MLflow registered model names are free text; we accept a conservative subset.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
# MLflow versions are positive integers.
VERSION = re.compile(r"^[1-9][0-9]{0,9}$")
# MLflow aliases: letters, digits, underscore, dash.
ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
# Tag keys and values used as triggers.
TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,127}$")
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.\-:/ ]{0,256}$")
# Prometheus label names (no leading double underscore: reserved).
LABEL_NAME = re.compile(r"^(?!__)[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Prometheus metric names.
METRIC_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]{0,199}$")
# Label values we put into queries ourselves (versions, slice values).
LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.\-:]{1,128}$")
# HAProxy backend/server names, nginx upstream names, Envoy cluster names.
PROXY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
# Names of environment variables that hold secrets.
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
# Policy-level names (metric names, fairness check names).
POLICY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def check(pattern: re.Pattern[str], value: str, what: str) -> str:
    """Return ``value`` if it matches ``pattern``; raise ValueError naming ``what`` if not."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: must match {pattern.pattern}")
    return value
