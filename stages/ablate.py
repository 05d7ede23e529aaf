"""DVC stage `ablate`: one short pre-training run per ablation row -> results/ablations.json.

Each row is its own MLflow run (tags ``stage=ablate``, ``ablation=<row>``) in the
profile's experiment, so the rows compare side by side in the MLflow UI; their
checkpoints persist under ``checkpoints/ablations/<row>/`` and resume after a kill.
"""

import json
import os
import sys
from pathlib import Path

from soho import ablations, stage, tracking
from soho.io import write_text
from soho.train import pretrain


def main(params, args) -> None:
    """Pre-train every ablation row on the shared short schedule and collect its held-out metrics."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ctx = args.kit.ctx  # torchrun initialised by the stage kit
    report: dict[str, dict] = {}
    for name, overrides in ablations.rows(params).items():
        row_params = ablations.ablation_params(params, name, overrides)
        folder = ablations.out_dir(params, name)
        if not ctx.is_main:
            pretrain.run(row_params, ctx, progress=False, out_dir=folder)
            continue
        with tracking.stage_run(
            "ablate", row_params, None, f"ablate@{name}", pipeline_id=args.kit.pipeline_id
        ) as mlflow:
            mlflow.set_tags({"ablation": name, "overrides": json.dumps(overrides, sort_keys=True)})

            metrics = pretrain.run(row_params, ctx, tracking.step_logger(mlflow), out_dir=folder)
            mlflow.log_metrics(tracking.results_metrics(metrics))
        report[name] = ablations.summary(metrics)
    if ctx.is_main:
        write_text(Path(params.paths.results) / "ablations.json", json.dumps(report, indent=1, sort_keys=True))


if __name__ == "__main__":
    sys.exit(stage.run("ablate", main, own_runs=True))
