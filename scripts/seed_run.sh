#!/usr/bin/env bash
# One run of the embedded pipeline's training stages with another seed, for validate's bands.
# Usage: scripts/seed_run.sh SEED OUT_DIR
# Data stay those of params.yaml (the shards of this checkout, seed 0): only the training
# randomness (initialisation, data order, masking, negatives) changes, which is the spread a
# re-run of CI can show. Runs in a scratch git worktree of HEAD; copies results/*.json to OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
seed=$1 out=$(realpath -m "$2")
work=$(mktemp -d /tmp/soho-seed-"$seed"-XXXX)
git worktree add --detach "$work" HEAD >/dev/null
trap 'git worktree remove --force "$work"' EXIT
rm -rf "$work/shards" && ln -s "$PWD/shards" "$work/shards"
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false SOHO_SEED=$seed
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db" PYTHONPATH="$work"  # this checkout's soho, not an editable install elsewhere
cd "$work"
python stages/pretrain.py
python stages/pretrain.py --variant scl
python stages/ablate.py
for task in $(python -c "from soho.tasks import TASKS; print(*TASKS)"); do
  python stages/finetune.py --task "$task"
  python stages/evaluate.py --task "$task"
done
mkdir -p "$out"
cp results/*.json "$out/"
rm -f "$out/table.json"
echo "seed $seed: results in $out"
