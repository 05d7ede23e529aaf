"""DVC stage `finetune@<task>`: fine-tune SOHO on one downstream task, with its baselines, and score them.

Trains every variant in ``finetune.variants`` (pretrained, pretrained_scl, scratch, text_only), one MLflow
run each, into ``checkpoints/finetune/<task>/<variant>/``; then scores every variant and chance
(``soho.tasks.scoring``: ``results/<task>.json``, ``results/submissions/<task>.json``).
"""

import os
import sys

from soho import stage, tracking
from soho.tasks import TASKS, finetune_params, get
from soho.tasks.run import finetune
from soho.tasks.scoring import score_task


def add_task(parser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS)


def main(params, args) -> None:
    """Fine-tune every variant of one task, then score them all."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ctx = args.kit.ctx  # torchrun initialised by the stage kit
    for variant in get(args.task).variants(finetune_params(params, args.task).variants):
        if not ctx.is_main:
            finetune(params, args.task, variant, ctx, progress=False)
            continue
        with tracking.stage_run("finetune", params, args.task, pipeline_id=args.kit.pipeline_id) as mlflow:
            mlflow.set_tag("variant", variant)

            final = finetune(params, args.task, variant, ctx, tracking.step_logger(mlflow))
            mlflow.log_metrics(tracking.phase_metrics("final", final))
    score_task(params, args.task, args.kit.pipeline_id, ctx)  # every rank scores its part; rank 0 writes


if __name__ == "__main__":
    sys.exit(stage.run("finetune", main, add_task, own_runs=True))
