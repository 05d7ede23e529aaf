"""DVC stages `pretrain` and `pretrain_scl`: shards -> a pre-trained checkpoint, its metrics and curves.

`pretrain` trains SOHO (MLM/MVM/ITM); `pretrain_scl` (``--variant scl``) trains the same
model with ``pretrain_scl.overrides`` (+ITC +SCL), the "SOHO + SCL" of the results table.
Each writes ``checkpoints/<name>/``, ``results/<name>.json`` and ``results/plots/<name>.csv``.
Single process: `python stages/pretrain.py`. Several GPUs: `torchrun --nproc_per_node=N stages/pretrain.py`.
"""

import json
import os
import sys
from pathlib import Path

from soho import stage, tracking
from soho.io import write_text
from soho.train import pretrain, variants
from soho.train.curves import CurveLog, write_csv


def add_variant(parser) -> None:
    parser.add_argument("--variant", choices=sorted(variants.VARIANTS), default="soho")


def main(params, args) -> None:
    """Pre-train one variant, evaluate it on held-out pairs, write the checkpoint and metrics."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ctx = args.kit.ctx  # torchrun initialised by the stage kit
    name = variants.VARIANTS[args.variant]
    trained = variants.variant_params(params, args.variant)
    out_dir = variants.variant_dir(params, args.variant)
    results = Path(params.paths.results)
    if not ctx.is_main:
        pretrain.run(trained, ctx, progress=False, out_dir=out_dir)
        return
    with tracking.stage_run(name, trained, pipeline_id=args.kit.pipeline_id) as mlflow:
        mlflow.set_tag("world_size", ctx.world_size)

        metrics = pretrain.run(trained, ctx, tracking.step_logger(mlflow), out_dir=out_dir)
        mlflow.log_metrics(tracking.results_metrics(metrics))
        write_text(results / f"{name}.json", json.dumps(metrics, indent=1, sort_keys=True))
        write_csv(results / "plots" / f"{name}.csv", CurveLog(out_dir / "train" / "curves.jsonl").rows())
        for path in (results / f"{name}.json", results / "plots" / f"{name}.csv"):
            tracking.log_artifact(mlflow, path)
        tracking.log_artifact(mlflow, out_dir / "model.safetensors", "checkpoint")


if __name__ == "__main__":
    sys.exit(stage.run("pretrain", main, add_variant, own_runs=True))
