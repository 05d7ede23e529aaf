"""Scoring shared by the classification tasks (VQA, NLVR2, SNLI-VE): one decoded pass, every variant.

Why all variants in one pass: each split is read, decoded and resized once and every
variant scores the same batches. Chance draws from its own seeded generator, in the order
the batches come, so its numbers do not depend on which other variants are scored (tested).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, ClassVar

import torch

from soho.data.loaders import LoaderSpec
from soho.tasks.base import Scoring, Task
from soho.train.distributed import all_gather_lists

if TYPE_CHECKING:
    from soho.tasks.model import TaskModel


class ClassificationTask(Task):
    """A task scored on predicted labels or answers; subclasses say what to collect and how to score it."""

    label_names: ClassVar[tuple[str, ...]] = ()  # what the served model answers for each class id
    outputs: ClassVar[dict[str, str]] = {"label": "string", "score": "double"}

    def serve(self, module: TaskModel, batch: dict) -> dict[str, list]:
        """The predicted class (``predict``'s argmax, by name) and its softmax probability."""
        probabilities = self.logits(module, batch).softmax(-1)
        chosen = probabilities.argmax(-1)
        scores = probabilities.gather(1, chosen[:, None])[:, 0]
        return {"label": [self.label_names[i] for i in chosen.tolist()], "score": scores.tolist()}

    def chance(self, batch: dict, classes: list[str] | None, rng: random.Random) -> list:
        """Uniform guesses for one batch."""
        raise NotImplementedError

    def targets(self, batch: dict) -> dict[str, list]:
        """What scoring needs from a batch besides the predictions (labels, ids, groups)."""
        raise NotImplementedError

    def split_context(self, spec: LoaderSpec, split: str) -> dict:
        """What scoring reads once per split, for every variant (VQA: the annotated questions)."""
        return {}

    def report(self, guesses: list, targets: dict[str, list], context: dict) -> dict:
        """Metrics of one variant's guesses (plus ``_predictions``, the submission rows)."""
        raise NotImplementedError

    def evaluate_split(self, modules: dict[str, TaskModel | None], split: str, scoring: Scoring) -> dict[str, dict]:
        """Every variant's guesses on ``split``; under torchrun each rank reads its shards and the guesses
        and targets are gathered, so every rank reports on the whole split."""
        predictions: dict[str, list] = {name: [] for name in modules}
        targets: dict[str, list] = {}
        spec, classes, ctx = scoring.spec, scoring.classes, scoring.ctx
        for batch in self.pipeline(split, spec, classes, readers="ranks" if ctx.enabled else "workers"):
            moved = {k: v.to(scoring.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            for name, module in modules.items():
                guess = module.predict(moved) if module is not None else self.chance(batch, classes, scoring.rngs[name])
                predictions[name] += guess
            for key, values in self.targets(batch).items():
                targets.setdefault(key, []).extend(values)
        predictions = {name: all_gather_lists(guesses, ctx) for name, guesses in predictions.items()}
        keys = all_gather_lists(sorted(targets), ctx)  # a rank given no shard has no target keys
        targets = {key: all_gather_lists(targets.get(key, []), ctx) for key in sorted(set(keys))}
        context = self.split_context(spec, split)
        return {name: self.report(guesses, targets, context) for name, guesses in predictions.items()}


def label_rows(guesses: list, labels: list) -> list[dict]:
    """Submission rows of a label task: index, prediction, label."""
    return [{"index": i, "prediction": p, "label": y} for i, (p, y) in enumerate(zip(guesses, labels, strict=True))]
