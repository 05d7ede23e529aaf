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
