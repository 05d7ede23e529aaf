"""Counted FLOPs of each paper-profile evaluation, and its time on one GPU at an assumed throughput.

Usage: python scripts/evaluation_cost.py [--tflops 350]
Why counted, not timed: no GPU was lent when this was written. The counts come from
``torch.utils.flop_counter.FlopCounterMode`` over the paper model built on the ``meta``
device (shapes only, nothing computed, seconds on a CPU): one CNN pass per image or frame,
one fusion pass per scored pair or example, at the paper profile's input sizes. The number
of passes per split follows the code (``soho/tasks/retrieval.py: match_matrix``: ITC ranks
every pair, ITM re-scores each text's and each image's top ``retrieval_rerank_k``, their union
at most ``texts x k + images x k``) and the public splits' sizes. Replace the assumed
throughput by a measured step when a GPU is at hand.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from soho.config import load_params, with_overrides
from soho.models.soho import SohoModel

REPO = Path(__file__).resolve().parents[1]
TEXT_TOKENS = 40  # model.text.max_length of the paper profile


@dataclass(frozen=True)
class Split:
    """A scored split: what goes through the CNN and how many fusion passes it takes."""

    name: str
    images: int  # CNN passes (frames for video)
    shape: tuple[int, ...]  # one CNN input (C, H, W), or (T, C, H, W) for a clip
    fusions: int  # fusion passes
    source: str


def flops(function) -> int:
    with FlopCounterMode(display=False) as count:
        function()
    return count.get_total_flops()


def unit_costs(model: SohoModel, shape: tuple[int, ...]) -> tuple[float, float, int]:
    """(CNN FLOPs per input, fusion FLOPs per pass, visual tokens) for inputs of ``shape``."""
    pixels = torch.zeros(1, *shape, device="meta")
    cnn = flops(lambda: model.encode_image(pixels))
    visual, _, layout = model.encode_image(pixels)
    ids = torch.zeros(1, TEXT_TOKENS, dtype=torch.long, device="meta")
    mask = torch.ones(1, TEXT_TOKENS, dtype=torch.long, device="meta")
    fusion = flops(lambda: model.fuse(ids, mask, visual, layout))
    return float(cnn), float(fusion), int(visual.shape[1])


def splits(rerank_k: int, frame_side: int) -> list[Split]:
    """The paper's evaluation splits, at SOHO's 600 x 1000 test size (padded to 608 x 1024)."""
    image = (3, 608, 1024)
    clip = (4, 3, frame_side, -(-frame_side * 4 // 3 // 32) * 32)  # 4 frames, MSR-VTT's 4:3 padded to 32
    return [
        Split(
            "COCO 5k test",
            5_000,
            image,
            25_010 * rerank_k + 5_000 * rerank_k,
            "Karpathy test: 5,000 images, 25,010 captions",
        ),
        Split(
            "Flickr30k 1k test",
            1_000,
            image,
            5_000 * rerank_k + 1_000 * rerank_k,
            "Karpathy test: 1,000 images, 5,000 captions",
        ),
        Split(
            "VQA v2 test-dev",
            107_394,
            image,
            107_394,
            "107,394 questions, one image pass each (examples are per question)",
        ),
        Split("NLVR2 test-P", 2 * 6_967, image, 2 * 6_967, "6,967 examples of two images, one fusion pass per image"),
        Split("SNLI-VE test", 17_901, image, 17_901, "17,901 hypotheses, one image pass each"),
        Split("MSR-VTT 1k-A test", 1_000, clip, 2 * 1_000 * rerank_k, "1,000 clips x 4 frames, 1,000 captions"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflops", type=float, default=350.0, help="assumed sustained TFLOP/s of one GPU")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml", "paper")
    params = with_overrides(params, {"model.text.init": "none", "model.vision.weights": None}, source="count")
    with torch.device("meta"):
        model = SohoModel(params.model).eval()
    model.quantise = False  # fine-tuned models bypass the Visual Dictionary (finetune.vd: bypass)
    k, frame_side = params.finetune.retrieval_rerank_k, params.finetune.video_size
    print(
        f"| split | CNN passes | fusion passes | visual tokens | TFLOPs | minutes at {args.tflops:.0f} TFLOP/s | counts |"
    )
    print("|---|---|---|---|---|---|---|")
    for split in splits(k, frame_side):
        cnn, fusion, tokens = unit_costs(model, split.shape)
        total = split.images * cnn + split.fusions * fusion
        minutes = total / (args.tflops * 1e12) / 60
        print(
            f"| {split.name} | {split.images:,} | {split.fusions:,} | {tokens} | {total / 1e12:,.0f} | "
            f"{minutes:.1f} | {split.source} |"
        )


if __name__ == "__main__":
    main()
