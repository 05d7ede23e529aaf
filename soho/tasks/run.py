"""Fine-tune one task from the pre-trained checkpoint (and its baselines); scoring is ``evaluation.py``.

Layout: ``checkpoints/finetune/<task>/<variant>/{model.safetensors,answers.json,train/}``;
``train/`` holds the resumable step checkpoints of the shared training loop.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from soho.config import Params
from soho.data import shards
from soho.data.loaders import LoaderSpec
from soho.io import atomic_file, write_text
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.tasks import finetune_params, get
from soho.tasks.model import TaskModel
from soho.train import checkpoint
from soho.train.distributed import DistContext
from soho.train.loop import Trainer
from soho.train.variants import code_digest, fingerprint, variant_params
from soho.train.variants import variant_dir as pretrain_dir

# Fine-tuning variant -> the pre-training variant it starts from (``scratch``: none).
STARTS_FROM = {"pretrained": "soho", "text_only": "soho", "pretrained_scl": "scl"}


def variant_dir(params: Params, task: str, variant: str) -> Path:
    return Path(params.paths.checkpoints) / "finetune" / task / variant


def start_fingerprint(params: Params, variant: str) -> str:
    """What the variant's starting point depends on: the pre-training that made it (or none)."""
    start = STARTS_FROM.get(variant)
    return fingerprint(variant_params(params, start)) if start else fingerprint(params)


def build(params: Params, task: str, variant: str, answers: list[str] | None, pretrained: bool = True) -> TaskModel:
    """SOHO + head with ``variant``'s settings, from the pre-trained weights of ``STARTS_FROM[variant]``
    (``scratch``, or ``pretrained=False``: from none)."""
    torch.manual_seed(params.seed)
    model = SohoModel(params.model)
    if pretrained and variant in STARTS_FROM:
        checkpoint.load_weights(model, pretrain_dir(params, STARTS_FROM[variant]) / "model.safetensors")
    settings = finetune_params(params, task, variant)
    return TaskModel(
        model,
        get(task),
        variant == "text_only",
        answers,
        itc_weight=settings.retrieval_itc,
        vd=settings.vd,
        rerank_k=settings.retrieval_rerank_k,
    )


def finetune(params: Params, task: str, variant: str, ctx: DistContext, on_log=None, progress: bool = True) -> dict:
    """Train ``variant`` on ``task``'s training split; returns the last logged training metrics."""
    out = variant_dir(params, task, variant)
    train_dir = out / "train"
    settings = finetune_params(params, task, variant)
    current = (
        start_fingerprint(params, variant)
        + task
        + variant
        + json.dumps(settings.model_dump(mode="json", exclude={"tasks", "by_variant"}))  # this variant's own values
        + code_digest(("tasks", "eval"))
        + shards.dataset_digest(Path(params.paths.shards), get(task).dataset)  # the task's shards, by sha256
    )
    checkpoint.start_over_if_changed(train_dir, current, ctx.is_main)
    if checkpoint.is_finished(train_dir, current) and (out / "model.safetensors").exists():
        return {}  # trained by an earlier, interrupted run of the stage
    definition = get(task)
    answers = definition.classes(Path(params.paths.shards), settings)
    tokenizer = load_tokenizer(params.model.text.init)
    module = build(params, task, variant, answers)
    optim = settings.optim
    groups = module.model.trainable_groups() | {"head": _head_params(module)}
    trainer = Trainer(module, groups, optim, params.seed, train_dir, ctx, on_log, progress)
    spec = LoaderSpec.build(params.paths.shards, tokenizer, params.model, params.seed, optim=optim, finetune=settings)
    split = definition.training_split(settings)
    final = trainer.fit(lambda epoch: spec.loader(definition.pipeline(split, spec, answers, epoch)))
    if ctx.is_main:
        with atomic_file(out / "model.safetensors") as tmp:
            checkpoint.save_model(module, str(tmp))
        write_text(out / "answers.json", json.dumps(answers or []))
        checkpoint.finish(train_dir, current)
    return final


def _head_params(module: TaskModel) -> list[torch.nn.Parameter]:
    return list(module.head.parameters()) if module.head is not None else []


def load_finetuned(params: Params, task: str, variant: str) -> TaskModel:
    folder = variant_dir(params, task, variant)
    answers = json.loads((folder / "answers.json").read_text()) if (folder / "answers.json").exists() else None
    module = build(params, task, variant, answers, pretrained=False)  # weights come from the fine-tuned file
    checkpoint.load_weights(module, folder / "model.safetensors")
    return module.eval()
