"""NLVR2: is a sentence true of a pair of images? Accuracy and consistency on dev and test-P.

As in SOHO (pair fusion): the sentence is fused with each image, both pooled outputs are
concatenated into an MLP. Consistency: every image pair of a sentence right.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from soho.data.loaders import LoaderSpec
from soho.eval import metrics
from soho.models.heads import mlp_head
from soho.tasks.classification import ClassificationTask, label_rows

if TYPE_CHECKING:
    from soho.tasks.model import TaskModel


def sentence_group(key: str) -> str:
    """Consistency groups one sentence over its image pairs: ``split-set-pair-sentence`` minus the pair."""
    parts = key.split("-")
    return "-".join(parts[:2] + parts[3:]) if len(parts) == 4 else key


class NLVR2(ClassificationTask):
    name = dataset = "nlvr2"
    eval_splits = ("dev", "test1")
    image_inputs = ("left_image", "right_image")
    label_names = ("false", "true")  # label 1: the sentence is true of the pair

    def examples(self, sample: dict, transform: Callable) -> list[dict]:
        pixels = torch.stack([transform(sample[k].convert("RGB")) for k in ("img0.png", "img1.png")])  # (2, 3, H, W)
        label = int(bool(sample["json"]["label"]))
        return [{"pixels": pixels, "text": sample["json"]["sentence"], "label": label, "key": sample["__key__"]}]

    def serving_pixels(self, images: list, spec: LoaderSpec) -> torch.Tensor:
        transform = spec.transform()
        return torch.stack([transform(image.convert("RGB")) for image in images])  # (2, 3, H, W), as examples()

    def head(self, hidden: int, classes: list[str]) -> nn.Module:
        return mlp_head(2 * hidden, 2 * hidden, 2)  # both images' pooled outputs, concatenated

    def logits(self, module: TaskModel, batch: dict) -> torch.Tensor:
        ids, attention, pixels = batch["input_ids"], batch["attention_mask"], batch["pixels"]  # pixels (B, 2, 3, H, W)
        masks = batch.get("pixel_mask")  # (B, 2, H, W) for padded (keep-ratio) pairs
        left = module.pooled(pixels[:, 0], ids, attention, None if masks is None else masks[:, 0])
        right = module.pooled(pixels[:, 1], ids, attention, None if masks is None else masks[:, 1])
        return module.head(torch.cat([left, right], dim=-1))  # (B, 2)

    def chance(self, batch: dict, classes: list[str] | None, rng: random.Random) -> list[int]:
        return [rng.randrange(2) for _ in batch["label"]]

    def targets(self, batch: dict) -> dict[str, list]:
        return {"label": batch["label"].tolist(), "group": [sentence_group(k) for k in batch.get("key", [])]}

    def report(self, guesses: list, targets: dict[str, list], context: dict) -> dict:
        labels = targets["label"]
        return {
            "accuracy": metrics.accuracy(guesses, labels),
            "consistency": metrics.consistency(guesses, labels, targets["group"]),
            "_predictions": label_rows(guesses, labels),
        }
