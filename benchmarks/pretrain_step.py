"""The cost of ITM's pairs, measured: one pre-training step (forward + backward) with SOHO's or ALBEF's.

``pretrain.objectives.itm_negatives``:

- **soho** (the official SOHO code): half the captions swapped for another image's; MLM, MVM
  and ITM read off one masked fusion forward of B rows.
- **albef**: that masked forward for MLM and MVM, then a forward of its own over B matched
  pairs and 2B negatives for ITM (4B fused rows in all).

Both run the same model (a profile's ``model`` section, random weights: run time does not
depend on them) on the same synthetic batch, interleaved (soho, albef, soho, ...) after a
warm-up, so machine noise hits both; the result is the ratio of medians. Usage:

    python benchmarks/pretrain_step.py --rounds 15 --out benchmarks/results/pretrain_step_embedded.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from soho.config import load_params
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.objectives.pretraining import Pretraining

MODES = ("soho", "albef")


def synthetic_batch(tokenizer, batch: int, size: int, length: int) -> dict[str, torch.Tensor]:
    """``batch`` pairs: random pixels (B,3,size,size), captions of ``length`` word pieces, two captions per image."""
    generator = torch.Generator().manual_seed(0)
    words = torch.randint(1000, 20000, (batch, length - 2), generator=generator)
    texts = [tokenizer.decode(row) for row in words]
    encoded = dict(
        tokenizer(texts, padding=True, truncation=True, max_length=length, return_tensors="pt")
    )  # as the loader
    encoded["pixels"] = torch.randn(batch, 3, size, size, generator=generator)
    encoded["image_key"] = torch.arange(batch) // 2
    return encoded


def cpu_name() -> str:
    """The CPU's model name (timings compare only on one kind of CPU)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def step_seconds(module: Pretraining, batch: dict, mode: str) -> float:
    module.weights = module.weights.model_copy(update={"itm_negatives": mode})
    module.generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    out = module(batch)
    out["loss"].backward()
    module.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="embedded", help="whose model section and batch size")
    parser.add_argument("--batch", type=int, default=None, help="pairs per step (default: the profile's)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pretrain_step.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    params = load_params(profile=args.profile)
    batch_size = args.batch or params.pretrain.optim.batch_size
    tokenizer = load_tokenizer(params.model.text.init)
    module = Pretraining(SohoModel(params.model), params.pretrain.objectives, tokenizer).train()
    batch = synthetic_batch(tokenizer, batch_size, params.model.image_size, params.model.text.max_length)
    for mode in MODES:  # warm-up: allocator, oneDNN primitives
        step_seconds(module, batch, mode)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            times[mode].append(step_seconds(module, batch, mode))
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    result = {
        "profile": args.profile,
        "batch": batch_size,
        "image_size": params.model.image_size,
        "text_length": params.model.text.max_length,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "median_s": medians,
        "albef_over_soho": medians["albef"] / medians["soho"],
        "seconds": times,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"step of {batch_size} pairs: soho {medians['soho'] * 1000:.0f} ms, albef {medians['albef'] * 1000:.0f} ms, "
        f"albef / soho {result['albef_over_soho']:.2f}x"
    )


if __name__ == "__main__":
    main()
