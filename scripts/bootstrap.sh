#!/usr/bin/env bash
# Create .venv and install soho with every dependency pinned by requirements.lock.
# Usage: scripts/bootstrap.sh [--dev]     (--dev adds pytest and ruff)
# Idempotent: a second run only checks that the pins are satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3.11}
command -v "$python_bin" >/dev/null || python_bin=python3
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock "pip"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".${extras}"
# --dev: the MLflow UI test drives Debian's headless Chromium; install it when missing.
if [ "${1:-}" = "--dev" ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "bootstrap: chromium is missing and apt-get is not available; the MLflow UI test will fail" >&2
  fi
fi
