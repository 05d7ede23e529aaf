#!/usr/bin/env bash
# The seed x CPU-kernel matrix behind validate's bands and claims (one script regenerates them).
# Usage: scripts/run_matrix.sh runs|heldout [--tasks TASK,...] SEED:KERNEL [SEED:KERNEL ...]
#   runs     each run goes to reference/runs/seed<SEED>-<KERNEL>; then the bands and claims are
#            rebuilt from every folder in reference/runs/ (scripts/make_bands.py)
#   heldout  each run goes to reference/heldout/seed<SEED>-<KERNEL>: seeds the bands never saw
# Then every reference and held-out run is checked against the bands (scripts/check_runs.py),
# printing the matrix table (seed, kernel, pass/fail, headline metrics, time).
# KERNEL: native, avx2, avx, one-thread (see scripts/seed_run.sh). Example, on an AVX-512 CPU:
#   scripts/run_matrix.sh runs 0:native 0:avx2 1:native 1:avx2 2:native
#   scripts/run_matrix.sh heldout 5:native 6:avx2
#   --tasks  a partial rerun of existing runs after a change that touches only those tasks
#            (see scripts/seed_run.sh): pre-training must reproduce, the tasks' results are replaced;
#            --tasks pretrain_scl[,TASK...]: SOHO + SCL pre-trains again (its overrides changed) and
#            only its variant is fine-tuned again, on the named tasks or on all
# Each run takes the training stages' time of one embedded `dvc repro` (minutes on 2 cores);
# the shards must exist (`dvc repro shard`).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=$1; shift
tasks=()
if [ "${1:-}" = --tasks ]; then IFS=, read -r -a tasks <<< "$2"; shift 2; fi
case "$kind" in runs|heldout) ;; *) echo "error: run_matrix.sh: first argument must be runs or heldout (got '$kind')" >&2; exit 2 ;; esac
for cell in "$@"; do  # every cell is checked before the first (long) run starts
  seed=${cell%%:*} kernel=${cell#*:}
  [[ "$cell" =~ ^[0-9]+:[a-z0-9-]+$ ]] || { echo "error: run_matrix.sh: '$cell' is not SEED:KERNEL" >&2; exit 2; }
  python3 scripts/kernels.py exports "$kernel" > /dev/null || exit 2  # names the known settings
done
for cell in "$@"; do
  seed=${cell%%:*} kernel=${cell#*:}
  bash scripts/seed_run.sh "$seed" "reference/$kind/seed$seed-$kernel" "$kernel" "${tasks[@]}"
done
export PATH="$PWD/.venv/bin:$PATH"
[ "$kind" = runs ] && python scripts/make_bands.py reference/runs/* --out reference/embedded.yaml
python scripts/check_runs.py reference/runs/* $( [ -d reference/heldout ] && echo reference/heldout/* )
