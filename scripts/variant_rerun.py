"""Fine-tune and score one variant of one task, as ``finetune@<task>`` does for each of its variants.

Why: after a change that only one variant reads (SOHO + SCL's pre-training), a reference run
(``scripts/seed_run.sh ... pretrain_scl``) redoes that variant alone; ``finetune.variants`` must
list SOHO itself, so the stage cannot. Writes ``results/<task>.json`` with chance and the variant,
whose entry seed_run.sh merges into the run's results.
Usage: python scripts/variant_rerun.py TASK VARIANT
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from soho.config import load_params
from soho.io import write_text
from soho.tasks import TASKS, finetune_params, get
from soho.tasks.evaluation import CHANCE, evaluate
from soho.tasks.run import finetune, load_finetuned
from soho.train.distributed import init_from_env


def main(task: str, variant: str) -> None:
    params = load_params()
    if task not in TASKS:
        raise SystemExit(f"error: variant_rerun.py: unknown task {task!r} (known: {', '.join(TASKS)})")
    trained = get(task).variants(finetune_params(params, task).variants)
    if variant not in trained:
        raise SystemExit(f"error: variant_rerun.py: {task} trains {', '.join(trained)}, not {variant!r}")
    ctx = init_from_env()  # the stage's context: under torchrun the ranks share the work, rank 0 writes
    finetune(params, task, variant, ctx, progress=False)
    scored = evaluate(params, task, {CHANCE: None, variant: load_finetuned(params, task, variant)}, ctx)
    if not ctx.is_main:
        return
    for splits in scored.values():
        for values in splits.values():
            values.pop("_predictions", None)  # the submission file is the stage's, from SOHO itself
    write_text(Path(params.paths.results) / f"{task}.json", json.dumps(scored, indent=1, sort_keys=True))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s variant_rerun %(levelname)s %(message)s")
    if len(sys.argv) != 3:
        raise SystemExit("usage: python scripts/variant_rerun.py TASK VARIANT")
    main(*sys.argv[1:])
