"""Pre-training: build SOHO from parameters, train with the shared loop, evaluate on held-out pairs."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import nn

from soho.config import ConfigError, Params, with_overrides
from soho.data import loaders
from soho.io import atomic_file, write_text
from soho.models.fusion import load_tokenizer
from soho.models.soho import ModelSpec, SohoModel
from soho.models.visual_dictionary import VisualDictionary
from soho.objectives.pretraining import ObjectiveWeights, pretraining_step
from soho.train import checkpoint
from soho.train.curves import CurveLog
from soho.train.distributed import DistContext
from soho.train.loop import LoopConfig, Trainer

log = logging.getLogger(__name__)

# Pre-training variant -> its name under checkpoints/ and results/ (and its DVC stage).
VARIANTS = {"soho": "pretrain", "scl": "pretrain_scl"}


def variant_params(params: Params, variant: str) -> Params:
    """What ``variant`` trains with: ``soho`` as given, ``scl`` with ``pretrain_scl.overrides``."""
    if variant not in VARIANTS:
        raise ConfigError(f"pre-training variant {variant!r}: expected one of {sorted(VARIANTS)}")
    if variant == "soho":
        return params
    outside = sorted(k for k in params.pretrain_scl.overrides if not k.startswith("pretrain."))
    if outside:
        raise ConfigError(
            f"pretrain_scl.overrides: only pretrain.* keys may differ (fine-tuning rebuilds the same model), got {outside}"
        )
    scl = with_overrides(params, dict(params.pretrain_scl.overrides), source="pretrain_scl.overrides")
    if scl.pretrain.objectives.scl <= 0:
        raise ConfigError(
            "pretrain_scl.overrides: must switch SCL on (pretrain.objectives.scl > 0), "
            f"got pretrain.objectives.scl={scl.pretrain.objectives.scl}"
        )
    return scl


def variant_dir(params: Params, variant: str) -> Path:
    return Path(params.paths.checkpoints) / VARIANTS[variant]


def model_spec(params: Params) -> ModelSpec:
    m = params.model
    return ModelSpec(
        vision_arch=m.vision.arch,
        vision_layers=list(m.vision.layers),
        vision_weights=m.vision.weights,
        max_grid=m.vision.max_grid,
        max_frames=m.vision.max_frames,
        text_init=m.text.init,
        text_layers=m.text.num_layers,
        vd_size=m.vd.size,
        vd_momentum=m.vd.momentum,
        vd_dead_after=m.vd.dead_after,
        embed_dim=m.embed_dim,
        pooling=m.text.pooling,
        freeze_word_embeddings=m.text.freeze_word_embeddings,
    )


def loop_config(optim, seed: int) -> LoopConfig:
    return LoopConfig(
        steps=optim.steps,
        lr=optim.lr,
        cnn_lr=optim.cnn_lr,
        weight_decay=optim.weight_decay,
        warmup_steps=optim.warmup_steps,
        grad_accum=optim.grad_accum,
        clip=optim.clip,
        amp=optim.amp,
        checkpoint_every=optim.checkpoint_every,
        log_every=optim.log_every,
        seed=seed,
    )


def objective_weights(params: Params) -> ObjectiveWeights:
    # By name: the two classes hold the same fields, and a field added to one only fails here.
    return ObjectiveWeights(**params.pretrain.objectives.model_dump())


class Pretraining(nn.Module):
    """Wraps SOHO so that the whole pre-training step is one ``forward`` (as DDP requires)."""

    def __init__(self, model: SohoModel, weights: ObjectiveWeights, tokenizer):
        super().__init__()
        self.model, self.weights = model, weights
        self.register_buffer("special_ids", torch.tensor(tokenizer.all_special_ids), persistent=False)
        self.mask_id = tokenizer.mask_token_id
        self.generator: torch.Generator | None = None

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        out = pretraining_step(self.model, batch, self.weights, self.special_ids, self.mask_id, self.generator)
        if "vd_indices" in out and self.model.vd is not None:
            usage = VisualDictionary.usage(out.pop("vd_indices"), self.model.vd.size)
            out |= {k: torch.tensor(v) for k, v in usage.items()}
        return out


# The code a pre-trained checkpoint depends on (the `pretrain` stage's code dependencies in dvc.yaml).
PRETRAIN_CODE = ("models", "objectives", "train", "data/loaders.py")


def code_digest(parts: tuple[str, ...], root: Path | None = None) -> str:
    """sha256 over the Python sources of ``parts`` (folders or files under the ``soho`` package).

    Why: a finished run is not repeated when its fingerprint matches. DVC re-runs a stage
    when its code changes, and without the code in the fingerprint the stage would hand back
    the weights and metrics the old code made.
    """
    root = root or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for part in parts:
        path = root / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def fingerprint(params: Params) -> str:
    """What a resumable checkpoint must match: model, pre-training settings, seed, data and code."""
    blob = json.dumps(
        {
            "model": params.model.model_dump(mode="json"),
            "pretrain": params.pretrain.model_dump(mode="json"),
            "seed": params.seed,
        },
        sort_keys=True,
    )
    stats = Path(params.paths.shards) / "stats.json"
    blob += stats.read_text() if stats.exists() else ""
    blob += code_digest(PRETRAIN_CODE)
    return hashlib.sha256(blob.encode()).hexdigest()


@torch.no_grad()
def evaluate(module: Pretraining, params: Params, tokenizer, device: torch.device) -> dict[str, float]:
    """MLM, MVM and ITM accuracy and VD usage on held-out COCO pairs, with a fixed masking seed."""
    module.eval()
    generator = torch.Generator(device="cpu").manual_seed(1234)
    module.generator = generator
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    indices = []
    seen = 0
    batches = loaders.caption_pipeline(
        params.paths.shards,
        ["coco"],
        "val",
        tokenizer,
        params.model.image_size,
        params.model.text.max_length,
        params.pretrain.optim.batch_size,
        params.seed,
        epoch=0,
    )
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = pretraining_step(module.model, batch, module.weights, module.special_ids, module.mask_id, generator)
        if "vd_indices" in out:
            indices.append(out.pop("vd_indices").cpu())
        size = len(batch["input_ids"])
        for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + float(value) * size
            counts[key] = counts.get(key, 0) + size
        seen += size
        if seen >= params.pretrain.eval_samples:
            break
    module.generator = None
    metrics = {f"heldout_{k}": sums[k] / counts[k] for k in sums if k.endswith("_acc") or k.endswith("_loss")}
    metrics["heldout_pairs"] = seen
    if indices and module.model.vd is not None:
        usage = VisualDictionary.usage(torch.cat([i.reshape(-1) for i in indices]), module.model.vd.size)
        metrics |= {f"heldout_{k}": v for k, v in usage.items()}
    module.train()
    return metrics


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
    model = SohoModel(model_spec(params))
    module = Pretraining(model, objective_weights(params), tokenizer)
    optim = params.pretrain.optim
    trainer = Trainer(
        module, model.trainable_groups(), loop_config(optim, params.seed), train_dir, ctx, on_log, progress
    )

    def batches(epoch: int):
        pipeline = loaders.caption_pipeline(
            params.paths.shards,
            list(params.pretrain.datasets),
            "train",
            tokenizer,
            params.model.image_size,
            params.model.text.max_length,
            optim.batch_size,
            params.seed,
            epoch,
            shuffle=optim.shuffle_buffer,
        )
        return torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=optim.num_workers)

    curves = CurveLog(train_dir / "curves.jsonl")

    def log_step(step: int, values: dict) -> None:
        curves.append(step, values)
        if on_log is not None:
            on_log(step, values)

    trainer.on_log = log_step
    trainer.fit(batches)
    metrics = curves.final()
    if ctx.is_main:
        metrics |= evaluate(module, params, tokenizer, ctx.device)
        with atomic_file(out_dir / "model.safetensors") as tmp:
            checkpoint.save_model(model, str(tmp))
        write_text(out_dir / "spec.json", json.dumps(model_spec(params).__dict__, default=str, indent=1))
        write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
        checkpoint.finish(train_dir, current)
    return metrics
