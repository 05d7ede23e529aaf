"""Held-out evaluation of a pre-training run: MLM, MVM, ITM (ITC, SCL) and VD usage on COCO val pairs.

Why fixed seeds: the masks and negatives come from their own generator (seed 1234), so two
checkpoints are scored on the same masked inputs and the numbers compare run to run.
"""

from __future__ import annotations

import torch

from soho.config import Params
from soho.data import loaders
from soho.models.visual_dictionary import VisualDictionary
from soho.objectives.pretraining import Pretraining, pretraining_step

HELDOUT_DATASET, HELDOUT_SPLIT = "coco", "val"
MASK_SEED = 1234


@torch.no_grad()
def evaluate(module: Pretraining, params: Params, tokenizer, device: torch.device) -> dict[str, float]:
    """``heldout_<objective>_{acc,loss}``, ``heldout_pairs`` and ``heldout_vd_*`` over ``pretrain.eval_samples`` pairs."""
    module.eval()
    generator = torch.Generator(device="cpu").manual_seed(MASK_SEED)
    module.generator = generator
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    indices = []
    seen = 0
    spec = loaders.LoaderSpec.build(
        params.paths.shards, tokenizer, params.model, params.seed, batch_size=params.pretrain.optim.batch_size
    )
    for batch in loaders.caption_pipeline(spec, [HELDOUT_DATASET], HELDOUT_SPLIT, readers="workers"):
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
        metrics |= {f"heldout_{k}": float(v) for k, v in usage.items()}
    module.train()
    return metrics
