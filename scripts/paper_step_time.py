"""Time one paper-size pre-training step on this machine (docs/paper-profile.md): ResNet-101 at 608x1024, 12-layer BERT-base (random), VD 2048.

Usage: python scripts/paper_step_time.py (nothing is downloaded: random weights)
"""

import time

import torch

from soho.config import load_params, with_overrides
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.objectives.pretraining import Pretraining

p = with_overrides(load_params("params.yaml", "paper"), {"model.text.init": "none", "model.vision.weights": None})
torch.manual_seed(0)
tok = load_tokenizer("none")
model = SohoModel(p.model)
module = Pretraining(model, p.pretrain.objectives, tok)
print("parameters", sum(x.numel() for x in model.parameters()) / 1e6, "M")
for batch_size in (2,):
    enc = tok(
        ["a man riding a horse on a beach near the water"] * batch_size,
        padding="max_length",
        max_length=40,
        return_tensors="pt",
    )
    batch = {
        "pixels": torch.randn(batch_size, 3, 608, 1024),
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
    }
    for step in range(2):
        start = time.perf_counter()
        out = module(batch)
        out["loss"].backward()
        print(
            f"batch {batch_size} step {step}: {time.perf_counter() - start:.1f} s, loss {float(out['loss'].detach()):.3f}"
        )
