"""DVC stage `pretrain`: shards -> SOHO checkpoint, results/pretrain.json, per-step curves; logged to MLflow.

Single process: `python stages/pretrain.py`. Several GPUs: `torchrun --nproc_per_node=N stages/pretrain.py`.
"""

import json
import os
import sys
from pathlib import Path

from soho import stage, tracking
from soho.data.atomic import write_text
from soho.train import distributed, pretrain
from soho.train.curves import CurveLog, write_csv


def main(params, args) -> None:
    """Pre-train SOHO (MLM/MVM/ITM), evaluate on held-out pairs, write the checkpoint and metrics."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ctx = distributed.init_from_env()
    results = Path(params.paths.results)
    if not ctx.is_main:
        pretrain.run(params, ctx, progress=False)
        return
    with tracking.stage_run("pretrain", params) as mlflow:
        mlflow.set_tag("world_size", ctx.world_size)

        def on_log(step: int, metrics: dict) -> None:
            mlflow.log_metrics(metrics, step=step)

        metrics = pretrain.run(params, ctx, on_log)
        mlflow.log_metrics(metrics)
        write_text(results / "pretrain.json", json.dumps(metrics, indent=1, sort_keys=True))
        rows = CurveLog(Path(params.paths.checkpoints) / "pretrain" / "train" / "curves.jsonl").rows()
        write_csv(results / "plots" / "pretrain.csv", rows)
        for path in (results / "pretrain.json", results / "plots" / "pretrain.csv"):
            tracking.log_artifact(mlflow, path)
        tracking.log_artifact(mlflow, Path(params.paths.checkpoints) / "pretrain" / "model.safetensors", "checkpoint")


if __name__ == "__main__":
    sys.exit(stage.run("pretrain", main))
