"""SNLI-VE: does the image entail, contradict or leave neutral a hypothesis? 3-way accuracy on dev and test."""

from __future__ import annotations

import random
from collections.abc import Callable

from torch import nn

from soho.eval import metrics
from soho.models.heads import mlp_head
from soho.tasks.classification import ClassificationTask, label_rows

LABELS = ("entailment", "neutral", "contradiction")


class SnliVE(ClassificationTask):
    name = dataset = "snli_ve"
    eval_splits = ("dev", "test")
    label_names = LABELS

    def examples(self, sample: dict, transform: Callable) -> list[dict]:
        pixels = transform(sample["jpg"].convert("RGB"))  # one image, several hypotheses
        hypotheses = sample["json"]["hypotheses"]
        return [{"pixels": pixels, "text": h["hypothesis"], "label": LABELS.index(h["label"])} for h in hypotheses]

    def head(self, hidden: int, classes: list[str]) -> nn.Module:
        return mlp_head(hidden, 2 * hidden, len(LABELS))

    def chance(self, batch: dict, classes: list[str] | None, rng: random.Random) -> list[int]:
        return [rng.randrange(len(LABELS)) for _ in batch["label"]]

    def targets(self, batch: dict) -> dict[str, list]:
        return {"label": batch["label"].tolist()}

    def report(self, guesses: list, targets: dict[str, list], context: dict) -> dict:
        labels = targets["label"]
        return {"accuracy": metrics.accuracy(guesses, labels), "_predictions": label_rows(guesses, labels)}
