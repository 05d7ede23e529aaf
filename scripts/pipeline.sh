#!/usr/bin/env bash
# README command (1): install, then run the whole pipeline with DVC (embedded profile by default).
# Extra arguments go to `dvc repro` (e.g. scripts/pipeline.sh --force).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# one id for every MLflow run of this `dvc repro` (tag pipeline_id); soho/stage.py reads it once per stage
export SOHO_PIPELINE_ID="${SOHO_PIPELINE_ID:-$(date -u +%Y%m%dT%H%M%S)-$$}"
dvc repro "$@"
