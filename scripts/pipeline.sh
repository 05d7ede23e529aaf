#!/usr/bin/env bash
# README command (1): install, then run the whole pipeline with DVC (embedded profile by default).
# Extra arguments go to `dvc repro` (e.g. scripts/pipeline.sh --force).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
dvc repro "$@"
