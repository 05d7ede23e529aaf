"""Held-out evaluation of a pre-training run: MLM, MVM, ITM (ITC, SCL) and VD usage on COCO val pairs.

Why fixed seeds: the masks and negatives of batch ``i`` come from their own generator (seed
``1234 + i``), so two checkpoints are scored on the same masked inputs and the numbers compare
run to run, and a batch's masks do not depend on which rank scores it.

Why every rank reads the whole split: the batches (and so the in-batch ITM negatives) are those
of one process; under torchrun rank ``r`` scores batches ``r, r + world, ...`` and the per-batch
sums are gathered and added in batch order, so the metrics equal one process's, bit for bit.
"""

from __future__ import annotations

import torch

from soho.config import Params
from soho.data import loaders
from soho.models.visual_dictionary import VisualDictionary
from soho.objectives.pretraining import Pretraining, pretraining_step
from soho.train.distributed import DistContext, all_gather_lists, sum_across

HELDOUT_DATASET, HELDOUT_SPLIT = "coco", "val"
MASK_SEED = 1234


@torch.no_grad()
def evaluate(module: Pretraining, params: Params, tokenizer, ctx: DistContext) -> dict[str, float]:
    """``heldout_<objective>_{acc,loss}``, ``heldout_pairs`` and ``heldout_vd_*`` over ``pretrain.eval_samples`` pairs.

    A collective under torchrun: every rank calls it, with the same weights and buffers, and gets the same metrics.
    """
    module.eval()
    records: list[tuple[int, int, dict[str, float]]] = []  # (batch index, rows, batch means) of this rank
    vd_size = module.model.vd.size if module.model.vd is not None else 0
    assignments = torch.zeros(vd_size, dtype=torch.long)  # (K,) visual tokens per VD entry, this rank
    seen = 0
    spec = loaders.LoaderSpec.build(
        params.paths.shards, tokenizer, params.model, params.seed, batch_size=params.pretrain.optim.batch_size
    )
    for index, batch in enumerate(loaders.caption_pipeline(spec, [HELDOUT_DATASET], HELDOUT_SPLIT, readers="workers")):
        if seen >= params.pretrain.eval_samples:
            break
        size = len(batch["input_ids"])
        seen += size
        if index % ctx.world_size != ctx.rank:
            continue
        generator = torch.Generator(device="cpu").manual_seed(MASK_SEED + index)
        batch = {k: v.to(ctx.device) for k, v in batch.items()}
        out = pretraining_step(module.model, batch, module.weights, module.special_ids, module.mask_id, generator)
        if "vd_indices" in out:
            assignments += torch.bincount(out.pop("vd_indices").reshape(-1).cpu(), minlength=vd_size)
        records.append((index, size, {key: float(value) for key, value in out.items()}))
    module.train()
    if vd_size:
        assignments = sum_across(assignments, ctx)
    return summarise(all_gather_lists(records, ctx), assignments, seen)


def summarise(records: list[tuple[int, int, dict[str, float]]], assignments: torch.Tensor, pairs: int) -> dict:
    """Row-weighted means of every batch's accuracies and losses, added in batch order (as one process does)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for _, size, values in sorted(records, key=lambda record: record[0]):
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value * size
            counts[key] = counts.get(key, 0) + size
    metrics: dict[str, float] = {f"heldout_{k}": sums[k] / counts[k] for k in sums if k.endswith(("_acc", "_loss"))}
    metrics["heldout_pairs"] = pairs
    if int(assignments.sum()) > 0:
        usage = VisualDictionary.usage_of_counts(assignments.float())
        metrics |= {f"heldout_{k}": float(v) for k, v in usage.items()}
    return metrics
