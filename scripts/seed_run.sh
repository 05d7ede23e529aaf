#!/usr/bin/env bash
# One reference run of the embedded pipeline's training stages, for validate's bands and claims.
# Usage: scripts/seed_run.sh SEED OUT_DIR [KERNEL [TASK ...]]
#   KERNEL (the CPU floating-point kernels the run uses; default: native): native, avx2, avx or
#   one-thread, whose variables scripts/kernels.py defines; `python scripts/kernels.py compare` shows
#   which change float results on this CPU, and run.json records the run's kernel fingerprint
# Data stay those of params.yaml (the shards of this checkout, seed 0): only the training
# randomness (initialisation, data order, masking, negatives) and the kernels change, which is
# the spread a CI run on another machine can show. Runs in a scratch git worktree of HEAD; copies
# results/*.json to OUT_DIR with run.json (seed, kernel, kernel fingerprint, CPU, torch, commit, seconds).
# TASK ...: a partial rerun into an existing OUT_DIR after a change that touches only those
# tasks (e.g. retrieval_msrvtt after a video-decoding fix); only the named tasks' results are
# replaced, and run.json lists the rerun (commit, tasks, seconds, where its pre-training came from).
# The rerun starts from the run's own pre-trained weights when they are kept (below) and their
# sha256 are those run.json recorded, on any CPU: minutes instead of a whole run. Otherwise
# pre-training runs again and must reproduce the folder's pretrain*.json (throughput aside: the
# same CPU and kernels), else the run has to be made whole.
# SOHO_<SECTION>__<KEY>=value (or a whole section, SOHO_<SECTION>='{...}') in the environment sets a
# parameter over HEAD's params.yaml for every stage of the run (a candidate configuration measured
# before params.yaml adopts it); run.json lists them under "overrides" (scripts/run_record.py). A
# band or held-out run belongs to params.yaml as committed: make it without them.
# A TASK rerun may change parameters that only those tasks read (e.g. a variant's retrieval protocol):
# its overrides become the run's, the earlier ones are kept in its entry of "reruns".
# TASK pretrain_scl: SOHO + SCL's pre-training changed (pretrain_scl.overrides) and SOHO's did not:
# SCL pre-trains again beside SOHO's kept weights, and only the pretrained_scl variant of the named
# tasks (every task when none is named) is fine-tuned again; its entry replaces the one in each
# task's results (the other variants do not read SCL's weights), and the kept SCL weights and
# their sha256 in run.json are replaced.
# A whole run keeps its pre-trained weights (model.safetensors, spec.json, metrics.json of
# pretrain and pretrain_scl, 170 MB) and its starting weights (weights/: the CNN's stand-in for
# ImageNet when params.yaml sets model.vision.weights, trained with the run's seed; the scratch
# variant starts from it) in reference/checkpoints/<runs|heldout>/<name>/ (not in git).
# They are found by OUT_DIR's last two names, wherever it is: a TASK rerun of a copy of
# reference/runs/NAME (e.g. candidates/X/runs/NAME, a screen of a fine-tuning change) starts from
# NAME's kept weights, and a *whole* run into such a copy would replace them; give a whole
# candidate run a parent of its own name (candidates/X/X/NAME keeps reference/checkpoints/X/NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
seed=$1 out=$(realpath -m "$2") kernel=${3:-native}
kept="$PWD/reference/checkpoints/$(basename "$(dirname "$out")")/$(basename "$out")"  # its pre-trained weights, outside git
shift $(( $# < 3 ? $# : 3 )); rerun_tasks=("$@")
scl_again=no named_tasks=()
for task in "${rerun_tasks[@]}"; do
  if [ "$task" = pretrain_scl ]; then scl_again=yes; else named_tasks+=("$task"); fi
done
if [ ${#rerun_tasks[@]} -gt 0 ]; then
  [ -f "$out/run.json" ] || { echo "error: seed_run.sh: a partial rerun needs a whole run in $out (no run.json)" >&2; exit 2; }
  old_seed=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['seed'], r['kernel'])" "$out/run.json")
  [ "$old_seed" = "$seed $kernel" ] || {
    echo "error: seed_run.sh: $out/run.json is seed/kernel '$old_seed', not '$seed $kernel'" >&2; exit 2; }
fi
exports=$(python3 scripts/kernels.py exports "$kernel") || exit 2  # the settings live in scripts/kernels.py
eval "$exports"
[ -f shards/stats.json ] && [ -d shards/coco ] || { echo "error: seed_run.sh: no shards in $PWD/shards (run dvc repro shard first)" >&2; exit 2; }
work=$(mktemp -d /tmp/soho-seed-"$seed"-XXXX)
git worktree add --detach "$work" HEAD >/dev/null
trap 'git worktree remove --force "$work"' EXIT
rm -rf "$work/shards" && ln -s "$PWD/shards" "$work/shards"
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false SOHO_SEED=$seed
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db" PYTHONPATH="$work"  # this checkout's soho, not an editable install elsewhere
cd "$work"
fingerprint=$(python scripts/kernels.py fingerprint)  # before the long part: a failure here loses nothing
rm -f results/*.json  # HEAD's committed numbers must not pass for this run's
start=$(date +%s)
from_kept=no
if [ ${#rerun_tasks[@]} -gt 0 ]; then
  status=0
  python - "$out/run.json" "$kept" "$scl_again" <<'PY' || status=$?
import json, sys
from pathlib import Path
sys.path.insert(0, "scripts")
from run_record import sha256
recorded, kept = json.loads(Path(sys.argv[1]).read_text()).get("checkpoints", {}), Path(sys.argv[2])
reused = ("pretrain",) if sys.argv[3] == "yes" else ("pretrain", "pretrain_scl")  # SCL's is made again
files = {name: kept / name / "model.safetensors" for name in reused}
files |= {name: kept / name for name in recorded if name.startswith("weights/")}  # the run's starting weights
if not recorded or any(not path.is_file() for path in files.values()):
    sys.exit(1)  # nothing kept: pre-train again
for name, path in files.items():
    if sha256(path) != recorded.get(name):
        print(f"error: seed_run.sh: {path} is not the file {sys.argv[1]} recorded (sha256 differs)", file=sys.stderr)
        sys.exit(3)
PY
  case $status in 0) from_kept=yes ;; 1) ;; *) exit "$status" ;; esac
  if [ "$from_kept" = no ] && [ "$scl_again" = yes ]; then
    echo "error: seed_run.sh: a pretrain_scl rerun stands on the run's kept SOHO weights; none in $kept: make the run whole" >&2
    exit 2
  fi
fi
if [ "$from_kept" = yes ]; then
  mkdir -p checkpoints results
  reused=(pretrain); [ "$scl_again" = yes ] || reused+=(pretrain_scl)
  for name in "${reused[@]}"; do
    cp -r "$kept/$name" checkpoints/ && cp "$out/$name.json" results/
  done
  [ ! -d "$kept/weights" ] || cp -r "$kept/weights/." weights/  # the stand-in the scratch variant starts from
  echo "seed $seed ($kernel): the pre-trained weights kept in $kept (sha256 as run.json): no pre-training of ${reused[*]}"
  [ "$scl_again" = no ] || python stages/pretrain.py --variant scl
else
  python stages/weights.py  # the starting weights: the embedded CNN's stand-in is trained with this seed
  python stages/pretrain.py
  python stages/pretrain.py --variant scl
fi
tasks=("${named_tasks[@]}")
[ ${#tasks[@]} -gt 0 ] || read -r -a tasks <<< "$(python -c "from soho.tasks import TASKS; print(*TASKS)")"
for task in "${tasks[@]}"; do
  if [ "$scl_again" = yes ]; then  # only the variant that reads SCL's weights
    python scripts/variant_rerun.py "$task" pretrained_scl
  else
    python stages/finetune.py --task "$task"  # trains, then scores every variant
  fi
done
seconds=$(( $(date +%s) - start ))
if [ ${#rerun_tasks[@]} -gt 0 ]; then
  python - "$out" "$(git rev-parse HEAD)" "$seconds" "$from_kept" "$fingerprint" "$scl_again" "$kept" "${tasks[@]}" <<'PY'
import json, os, shutil, sys
from pathlib import Path
sys.path.insert(0, "scripts")
from run_record import cpu_name, recorded_overrides, sha256, with_variant
out, commit, seconds, from_kept, kernels = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
scl_again, kept, tasks = sys.argv[6] == "yes", Path(sys.argv[7]), sys.argv[8:]
kept_names = ("pretrain.json",) if scl_again else ("pretrain.json", "pretrain_scl.json")
for name in kept_names:  # the rerun stands on the same pre-training, or not at all
    old, new = (json.loads(p.read_text()) for p in (out / name, Path("results") / name))
    differs = sorted(k for k in set(old) | set(new) if k != "final_samples_per_s" and old.get(k) != new.get(k))
    if differs:
        sys.exit(f"error: seed_run.sh: {name} of this rerun differs from {out / name} in {differs}: make the run whole")
run = json.loads((out / "run.json").read_text())
results = {task: json.loads((Path("results") / f"{task}.json").read_text()) for task in tasks}
if scl_again:  # only pretrained_scl was trained: the run's other variants stand
    for task, new in results.items():  # every check before the first write
        recorded = out / f"{task}.json"
        results[task] = with_variant(json.loads(recorded.read_text()), new, "pretrained_scl", str(recorded))
for task, report in results.items():  # written as soho.tasks.scoring writes them
    (out / f"{task}.json").write_text(json.dumps(report, indent=1, sort_keys=True))
if scl_again:  # SCL's new weights become the run's kept ones, then run.json records them
    shutil.copyfile(Path("results") / "pretrain_scl.json", out / "pretrain_scl.json")
    staged = kept.with_name(kept.name + ".scl")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for name in ("model.safetensors", "spec.json", "metrics.json"):
        shutil.copyfile(Path("checkpoints") / "pretrain_scl" / name, staged / name)
    shutil.rmtree(kept / "pretrain_scl")
    staged.rename(kept / "pretrain_scl")
    run["checkpoints"]["pretrain_scl"] = sha256(kept / "pretrain_scl" / "model.safetensors")
pretraining = "kept weights" if from_kept == "yes" else "pre-trained again, reproduced"
if scl_again:
    pretraining = f"SOHO: {pretraining}; SOHO + SCL: pre-trained again"
    tasks = ["pretrain_scl", *tasks]
overrides = recorded_overrides(os.environ)
rerun = {"commit": commit, "tasks": tasks, "training_seconds": seconds, "pretraining": pretraining, "cpu": cpu_name()}
rerun["kernel_fingerprint"] = json.loads(kernels)["fingerprint"]  # a rerun may run on another CPU
if overrides != run.get("overrides", {}):  # parameters only these tasks read changed: the run's are now these
    rerun |= {"overrides": overrides, "overrides_before": run.get("overrides", {})}
    run["overrides"] = overrides
run.setdefault("reruns", []).append(rerun)
(out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
PY
  echo "seed $seed ($kernel): ${rerun_tasks[*]} rerun into $out (${seconds} s)"
  exit 0
fi
mkdir -p "$out"
cp results/*.json "$out/"
rm -f "$out/table.json"
rm -rf "$kept.partial" && mkdir -p "$kept.partial"  # kept whole or not at all
for name in pretrain pretrain_scl; do
  mkdir -p "$kept.partial/$name" && cp checkpoints/$name/{model.safetensors,spec.json,metrics.json} "$kept.partial/$name/"
done
cp -r weights "$kept.partial/weights"
rm -rf "$kept" && mv "$kept.partial" "$kept"
python - "$out/run.json" "$seed" "$kernel" "$seconds" "$(git rev-parse HEAD)" "$kept" "$fingerprint" <<'PY'
import json, os, sys
from pathlib import Path
import torch
sys.path.insert(0, "scripts")
from kernels import KERNEL_VARIABLES
from run_record import cpu_name, recorded_overrides, sha256
path, seed, kernel, seconds, commit, kept, kernels = sys.argv[1:]
cpu = cpu_name()
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
env = {k: os.environ[k] for k in KERNEL_VARIABLES if k in os.environ}
# parameters set from the environment over HEAD's params.yaml (a candidate configuration, see the header)
overrides = recorded_overrides(os.environ)
info = {
    "seed": int(seed), "kernel": kernel, "env": env, "overrides": overrides, "cpu": cpu, "avx512f": "avx512f" in flags,
    "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads(),
    "torch": torch.__version__,
    # scripts/kernels.py: the same fingerprint = the same results for the operations it runs (same torch)
    "kernel_fingerprint": json.loads(kernels)["fingerprint"],
    "commit": commit, "training_seconds": int(seconds),
    "checkpoints": {  # the weights kept in reference/checkpoints/<runs|heldout>/<run>/, for reruns of single tasks
        name: sha256(Path(kept) / name / "model.safetensors")
        for name in ("pretrain", "pretrain_scl")
    }
    | {  # and the starting weights (weights/: the stand-in CNN, when params.yaml has one)
        str(file.relative_to(kept)): sha256(file)
        for file in sorted((Path(kept) / "weights").rglob("*"))
        if file.is_file()
    },
}
open(path, "w").write(json.dumps(info, indent=1) + "\n")
PY
echo "seed $seed ($kernel): results in $out (${seconds} s)"
