#!/usr/bin/env bash
# Install what a fresh Debian/Ubuntu machine lacks to run canary and its tests:
# the real servers the tests and the demo start (Prometheus, HAProxy, nginx), the headless
# browser that checks the status page (Chromium) and a virtualenv (.venv) holding canary
# with its dev extra. Safe to run again: it only installs what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
# Headless Chromium renders the status page in its browser test; a font so text has glyphs.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-dejavu-core)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
  # The packages may start system-wide services where systemd runs; canary starts its own.
  for svc in prometheus haproxy nginx; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.canary-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing canary and its dev dependencies into $VENV (a minute or two)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import canary, mlflow" || { echo "setup: install failed" >&2; exit 1; }
  touch "$stamp"
fi
