#!/usr/bin/env bash
# Run canary's test suite: unit tests, and integration tests against real MLflow,
# Prometheus, HAProxy, nginx and Envoy processes that the tests start on loopback ports.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest "$@"
