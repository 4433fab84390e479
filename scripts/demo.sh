#!/usr/bin/env bash
# canary's main job on this machine, end to end: installs what is missing, then runs
# `canary demo`: a real MLflow, Prometheus, HAProxy, scoring servers and the canary daemon
# take a retrained model to production and roll back one that harms a group of applicants.
# Arguments go to `canary demo` (e.g. --exit to stop at the end instead of at Ctrl-C;
# `canary demo --help` lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "demo: starting (about three minutes to the last decision)" >&2
exec canary demo "$@"
