"""Pre-training orchestration: build SOHO from parameters, train with the shared loop, score held-out pairs.

Why only orchestration here: the objectives (``soho.objectives``), the variants and
fingerprint (``soho.train.variants``) and the held-out scores (``soho.eval.heldout``) each
live in their own module, so fine-tuning can use them without importing this one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from soho.config import Params
from soho.data import loaders
from soho.eval.heldout import evaluate
from soho.io import atomic_file, write_text
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.objectives.pretraining import Pretraining
from soho.train import checkpoint
from soho.train.curves import CurveLog
from soho.train.distributed import DistContext, broadcast_buffers
from soho.train.loop import Trainer
from soho.train.variants import fingerprint, variant_dir

log = logging.getLogger(__name__)


def run(
    params: Params,
    ctx: DistContext,
    on_log=None,
    progress: bool = True,
    out_dir: Path | None = None,
) -> dict:
    """Train and evaluate; writes ``out_dir/{model.safetensors,spec.json,metrics.json}``; returns the metrics.

    ``out_dir`` defaults to ``checkpoints/pretrain``; the per-step curves (also after a
    resume) are in ``out_dir/train/curves.jsonl``. The step checkpoints are dropped once the
    run is finished, and a finished run (same fingerprint) is not repeated.
    """
    out_dir = out_dir or variant_dir(params, "soho")
    train_dir = out_dir / "train"
    current = fingerprint(params)
    checkpoint.start_over_if_changed(train_dir, current, ctx.is_main)
    if checkpoint.is_finished(train_dir, current) and (out_dir / "metrics.json").exists():
        return json.loads((out_dir / "metrics.json").read_text())
    tokenizer = load_tokenizer(params.model.text.init)
    torch.manual_seed(params.seed)
    model = SohoModel(params.model)
    module = Pretraining(model, params.pretrain.objectives, tokenizer)
    optim = params.pretrain.optim
    trainer = Trainer(module, model.trainable_groups(), optim, params.seed, train_dir, ctx, progress=progress)
    spec = loaders.LoaderSpec.build(params.paths.shards, tokenizer, params.model, params.seed, optim=optim)
    datasets = list(params.pretrain.datasets)
    curves = CurveLog(train_dir / "curves.jsonl")

    def log_step(step: int, values: dict) -> None:
        curves.append(step, values)
        if on_log is not None:
            on_log(step, values)

    trainer.on_log = log_step
    trainer.fit(lambda epoch: spec.loader(loaders.caption_pipeline(spec, datasets, "train", epoch)))
    metrics = curves.final()
    broadcast_buffers(model, ctx)  # the ranks share the held-out batches: one model, rank 0's
    metrics |= evaluate(module, params, tokenizer, ctx)
    if ctx.is_main:
        with atomic_file(out_dir / "model.safetensors") as tmp:
            checkpoint.save_model(model, str(tmp))
        write_text(out_dir / "spec.json", json.dumps(params.model.model_dump(mode="json"), indent=1))
        write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
        checkpoint.finish(train_dir, current)
    return metrics
