"""Score the fine-tuned variants of one task (and chance) on its evaluation splits.

Why all variants in one pass: each split is read, decoded and resized once, and every
variant scores the same batches (the task decides how: ``Task.evaluate_split``). Chance
draws from its own seeded generators, in the order the batches come, so its numbers do
not depend on which other variants are scored (tested).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from soho.config import FinetuneParams, Params
from soho.data.loaders import LoaderSpec
from soho.models.fusion import load_tokenizer
from soho.tasks import finetune_params, get
from soho.tasks.base import Scoring
from soho.tasks.model import TaskModel
from soho.train.distributed import DistContext

CHANCE = "chance"  # the variant name of uniform guessing: no model


def evaluation_spec(params: Params, settings: FinetuneParams, tokenizer) -> LoaderSpec:
    """Evaluation batches: the shards' order, the task's ``finetune.eval_batch_size``."""
    return LoaderSpec.build(
        params.paths.shards,
        tokenizer,
        params.model,
        params.seed,
        batch_size=settings.eval_batch_size,
        finetune=settings,
    )


def evaluation_device() -> torch.device:
    """The GPU when there is one (under torchrun, this rank's), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def evaluate(
    params: Params, task: str, variants: dict[str, TaskModel | None], ctx: DistContext = DistContext()
) -> dict[str, dict]:
    """{variant: {split: metrics}} for the given fine-tuned modules (``None``: chance) on ``task``.

    Under torchrun every rank calls it (it is a collective): the ranks split each split's work
    and every rank returns the whole split's metrics. Chance's guesses then come from one
    generator per rank (``seed + rank``), so its numbers depend on the rank count.
    """
    definition, settings = get(task), finetune_params(params, task)
    spec = evaluation_spec(params, settings, load_tokenizer(params.model.text.init))
    classes = definition.classes(Path(params.paths.shards), settings)
    rngs = {name: random.Random(params.seed + ctx.rank) for name, module in variants.items() if module is None}
    results: dict[str, dict] = {name: {} for name in variants}
    device = ctx.device if ctx.enabled else evaluation_device()
    variants = {name: None if module is None else module.to(device) for name, module in variants.items()}
    scoring = Scoring(spec, classes, settings, rngs, device, ctx)
    for split in definition.scoring_splits(settings):
        for name, report in definition.evaluate_split(variants, split, scoring).items():
            results[name][definition.result_split(split)] = report
    return results
