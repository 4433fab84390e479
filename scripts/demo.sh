#!/usr/bin/env bash
# canary's main job on this machine. For now: check every example rollout policy
# (the local end-to-end rollout replaces this as the daemon lands).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
canary validate config/policies/
