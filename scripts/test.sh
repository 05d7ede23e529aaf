#!/usr/bin/env bash
# README command (2): install what the tests need, then run the test suite.
# pytest's exit code is kept: 5 ("no tests collected") fails like any other error.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --dev
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
ruff check soho stages tests
python -m pytest "$@"
