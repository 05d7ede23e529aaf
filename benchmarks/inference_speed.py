"""SOHO's speed claim, measured: grid features (no detector) against a region-based pipeline.

Both pipelines score image-caption pairs with the same fusion Transformer and differ only
in how an image becomes visual tokens:

- **grid** (SOHO): ResNet-50 trunk -> 1x1 projection -> Visual Dictionary -> one token per cell.
- **region** (BUTD-style, as UNITER / LXMERT / VILLA use): torchvision's Faster R-CNN
  ResNet-50-FPN proposes boxes, the 36 best detections are kept, and their RoI box-head
  features (1024-d) plus box geometry are projected to tokens.

Weights are random (run time does not depend on them, and nothing is downloaded). The two
are timed interleaved in one process (grid, region, grid, ...), so machine noise hits both;
the result is the ratio of medians. Usage:

    python benchmarks/inference_speed.py --size 384 --rounds 7 --out benchmarks/results/inference_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from soho.config import ModelParams
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel

REGIONS = 36  # BUTD's fixed number of boxes per image


class RegionTokens(nn.Module):
    """Faster R-CNN detections -> (B, 36, hidden) region tokens (box features + geometry)."""

    def __init__(self, hidden: int, size: int):
        super().__init__()
        self.detector = fasterrcnn_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            box_score_thresh=0.0,
            box_detections_per_img=REGIONS,
            min_size=size,
            max_size=size,
        ).eval()
        self.features = nn.Linear(1024, hidden)
        self.geometry = nn.Linear(5, hidden)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        det = self.detector
        images, _ = det.transform(list(pixels))
        maps = det.backbone(images.tensors)
        proposals, _ = det.rpn(images, maps)
        detections, _ = det.roi_heads(maps, proposals, images.image_sizes)
        boxes = [d["boxes"][:REGIONS] for d in detections]
        pooled = det.roi_heads.box_head(det.roi_heads.box_roi_pool(maps, boxes, images.image_sizes))
        tokens = torch.zeros(len(boxes), REGIONS, self.features.out_features)
        start = 0
        for i, b in enumerate(boxes):
            h, w = images.image_sizes[i]
            scale = torch.tensor([w, h, w, h], dtype=b.dtype)
            geometry = torch.cat([b / scale, ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (h * w))[:, None]], dim=1)
            tokens[i, : len(b)] = self.features(pooled[start : start + len(b)]) + self.geometry(geometry)
            start += len(b)
        return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384, help="square input side in pixels")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/inference_speed.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = {"vision": {"arch": "resnet50", "max_grid": 32}, "text": {"num_layers": 6}, "vd": {"size": 2048}}
    model = SohoModel(ModelParams(**spec)).eval()
    regions = RegionTokens(model.hidden, args.size).eval()
    tokenizer = load_tokenizer("minilm")
    text = tokenizer(["a small red circle left of a large blue square"] * args.batch, return_tensors="pt")
    pixels = torch.rand(args.batch, 3, args.size, args.size)

    @torch.inference_mode()
    def grid() -> None:
        visual, _, layout = model.encode_image(pixels)
        model.itm_logits(model.fuse(text["input_ids"], text["attention_mask"], visual, layout), text["attention_mask"])

    @torch.inference_mode()
    def region() -> None:
        tokens = regions(pixels)
        hidden = model.fusion(model.fusion.embed_text(text["input_ids"]), text["attention_mask"], tokens)
        model.itm_logits(hidden, text["attention_mask"])

    for fn in (grid, region):  # warm-up
        fn()
    times: dict[str, list[float]] = {"grid": [], "region": []}
    for _ in range(args.rounds):
        for name, fn in (("grid", grid), ("region", region)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "size": args.size,
        "batch": args.batch,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "device": "cpu",
        "seconds": times,
        "median_s": medians,
        "region_over_grid": medians["region"] / medians["grid"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(
        f"size {args.size}, batch {args.batch}: grid {medians['grid'] * 1000:.0f} ms, "
        f"region {medians['region'] * 1000:.0f} ms, region/grid = {result['region_over_grid']:.2f}x"
    )


if __name__ == "__main__":
    main()
