#!/usr/bin/env bash
# Run canary's test suite: unit tests, and integration tests against real MLflow,
# Prometheus, HAProxy, nginx and Envoy processes that the tests start on loopback ports.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# Two workers: most integration and end-to-end time is spent waiting on real servers, so
# two files at a time halve the wall time on a 2-core machine. A file's tests stay on one
# worker (--dist loadfile), each worker starts its own session servers.
exec .venv/bin/python -m pytest -n "${CANARY_TEST_WORKERS:-2}" --dist loadfile "$@"
