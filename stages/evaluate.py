"""Re-score the saved fine-tuned checkpoints of one task -> results/<task>.json (no training).

`finetune@<task>` already scores after training (``soho.tasks.scoring``); this entry point
scores checkpoints again, e.g. after a metric fix, with the same code and outputs.
"""

import sys

from soho import stage
from soho.tasks import TASKS
from soho.tasks.scoring import score_task


def add_task(parser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS)


def main(params, args) -> None:
    """Evaluate each fine-tuned variant (and chance) on the task's evaluation splits."""
    score_task(params, args.task, args.kit.pipeline_id, args.kit.ctx)


if __name__ == "__main__":
    sys.exit(stage.run("evaluate", main, add_task, own_runs=True))
