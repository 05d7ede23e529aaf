#!/usr/bin/env bash
# README command (2): install what the tests need, run the test suite, then reproduce the
# embedded pipeline with DVC and check every metric against its band (stage `validate`).
# pytest's exit code is kept: 5 ("no tests collected") fails like any other error.
# Arguments go to pytest; SOHO_SKIP_PIPELINE=1 stops after the tests (a quicker local loop).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --dev
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false
ruff check soho stages tests scripts
# the tests need ~11 GB at their peak in pytest's temporary folder (paper-size checkpoints): say what there is
echo "free for pytest's temporary folders: $(df -h --output=avail "${TMPDIR:-/tmp}" | tail -1 | tr -d ' ')"
python -m pytest "$@"
# the committed results must belong to the committed code: dvc.lock has to match the tree
# (before `dvc repro`, which would quietly bring the lock up to date)
python scripts/check_lock.py
if [ "${SOHO_SKIP_PIPELINE:-0}" != "1" ]; then
  start=$(date +%s)
  # one id for every MLflow run of this `dvc repro` (tag pipeline_id); soho/stage.py reads it once per stage
  export SOHO_PIPELINE_ID="${SOHO_PIPELINE_ID:-$(date -u +%Y%m%dT%H%M%S)-$$}"
  dvc repro
  echo "test.sh: embedded dvc repro (validate included) took $(( $(date +%s) - start )) s"
fi
