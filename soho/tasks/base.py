"""What a downstream task is: its data set and splits, sample mapping, head, loss, prediction and metrics.

Why a class per task family: adding a task (captioning, referring expressions, ...) means
one new module that subclasses :class:`Task` and registers itself, plus one params entry;
the stages, the fine-tuning loop and the model look tasks up instead of branching on names.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from soho.config import FinetuneParams
from soho.data import shards
from soho.data.loaders import LoaderSpec
from soho.data.shard_checks import Split
from soho.train.distributed import DistContext

if TYPE_CHECKING:
    from soho.tasks.model import TaskModel


@dataclass(frozen=True)
class Scoring:
    """What scoring a split needs besides the models: its reader, the classes, the task's parameters, chance's RNGs."""

    spec: LoaderSpec
    classes: list[str] | None
    finetune: FinetuneParams
    rngs: dict[str, random.Random]
    device: torch.device = torch.device("cpu")  # where the models are; the batches move there
    # under torchrun every rank scores its part of each split and the parts are gathered
    ctx: DistContext = DistContext()


class Task:
    """One downstream task. Subclasses set the class attributes and the sample mapping."""

    name: ClassVar[str]
    dataset: ClassVar[str]  # the shards it reads: shards/<dataset>/
    train_split: ClassVar[str] = "train"
    eval_splits: ClassVar[tuple[str, ...]]
    sees_text_alone: ClassVar[bool] = True  # False: a text-only baseline is meaningless (retrieval)
    # The served model (soho.serving): its image columns (base64 PNG/JPEG) besides ``text``, and its outputs
    image_inputs: ClassVar[tuple[str, ...]] = ("image",)
    outputs: ClassVar[dict[str, str]]  # output column -> MLflow type ("string", "double")

    def training_split(self, finetune: FinetuneParams) -> str | tuple[str, ...]:
        """The split(s) it fine-tunes on (a task whose protocol is a parameter overrides this)."""
        return self.train_split

    def scoring_splits(self, finetune: FinetuneParams) -> tuple[str, ...]:
        """The splits it is scored on."""
        return self.eval_splits

    def result_split(self, split: str) -> str:
        """The name a scored split's metrics are stored under (the results files, the report, the bands)."""
        return split

    def variants(self, variants: tuple[str, ...]) -> tuple[str, ...]:
        """The fine-tuning variants worth training for this task."""
        return tuple(v for v in variants if self.sees_text_alone or v != "text_only")

    def classes(self, shards_root: Path, finetune: FinetuneParams) -> list[str] | None:
        """The classifier's class names when they come from the data (VQA's answers); else None."""
        return None

    def to_samples(self, spec: LoaderSpec, classes: list[str] | None, epoch: int) -> Callable[[dict], list[dict]]:
        """One shard sample -> the training / evaluation examples it holds (images at ``spec.image_size``)."""
        transform = spec.transform()
        return lambda sample: self.examples(sample, transform)

    def examples(self, sample: dict, transform: Callable) -> list[dict]:
        """The examples of one decoded shard sample, its images through ``transform``."""
        raise NotImplementedError

    def pipeline(
        self,
        split: str | tuple[str, ...],
        spec: LoaderSpec,
        classes: list[str] | None = None,
        epoch: int = 0,
        readers: Split = "ranks",
    ):
        """Batches of ``split`` (or of several splits' shards together, e.g. VQA's train + val): training
        batches carry targets, evaluation ones ids too.

        ``readers``: how the shards are divided (:data:`soho.data.shard_checks.Split`): ``ranks`` to
        train under DDP; scoring reads with ``workers``, so one rank sees the whole split.
        """
        splits = (split,) if isinstance(split, str) else split
        urls = [url for name in splits for url in shards.shard_urls(spec.shards, self.dataset, name)]
        collate = spec.collate()

        def collate_keys(samples: list[dict]) -> dict:
            keys = [s.pop("key") for s in samples] if "key" in samples[0] else None
            batch = collate(samples)
            if keys is not None:
                batch["key"] = keys
            return batch

        to_samples = self.to_samples(spec, classes, epoch)
        return shards.pipeline(
            urls,
            to_samples,
            spec.batch_size,
            collate_keys,
            shuffle=spec.shuffle,
            seed=spec.seed + epoch,
            expand=True,
            split=readers,
        )

    def head(self, hidden: int, classes: list[str]) -> nn.Module | None:
        """The task head on the pooled cross-modal output (None: the pre-trained ITM head)."""
        raise NotImplementedError

    def logits(self, module: TaskModel, batch: dict) -> torch.Tensor:
        return module.head(
            module.pooled(batch["pixels"], batch["input_ids"], batch["attention_mask"], batch.get("pixel_mask"))
        )

    def loss(self, module: TaskModel, batch: dict) -> dict[str, torch.Tensor]:
        logits = self.logits(module, batch)
        loss = F.cross_entropy(logits, batch["label"])
        return {"loss": loss, "acc": (logits.argmax(-1) == batch["label"]).float().mean()}

    def predict(self, module: TaskModel, batch: dict) -> list:
        return self.logits(module, batch).argmax(-1).tolist()

    def serving_pixels(self, images: list, spec: LoaderSpec) -> torch.Tensor:
        """A served row's decoded images (RGB PIL, in ``image_inputs`` order) -> its pixels, as ``examples`` makes them."""
        return spec.transform()(images[0].convert("RGB"))

    def serve(self, module: TaskModel, batch: dict) -> dict[str, list]:
        """The served model's ``outputs`` columns for one batch."""
        raise NotImplementedError

    def submission(self, predictions: dict[str, list]) -> object:
        """What ``results/submissions/<task>.json`` holds, from the pre-trained variant's rows per split."""
        return predictions

    def evaluate_split(self, modules: dict[str, TaskModel | None], split: str, scoring: Scoring) -> dict[str, dict]:
        """{variant: metrics} on one split; a ``None`` module is chance (drawing from ``scoring.rngs[name]``)."""
        raise NotImplementedError
