"""VQA v2: an answer classifier over the most frequent training answers, soft scores, official accuracy.

As in SOHO / UNITER: an MLP on the pooled output, BCE on the soft scores of the ten
annotator answers (scaled by the answer count), accuracy by the official evaluator's rules.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from soho.config import FinetuneParams
from soho.data import shards
from soho.data.loaders import LoaderSpec
from soho.eval import metrics
from soho.models.heads import mlp_head
from soho.tasks.classification import ClassificationTask

if TYPE_CHECKING:
    from soho.tasks.model import TaskModel


def split_questions(shards_root: Path, split: str) -> Iterator[list[dict]]:
    """The questions of each image of a VQA split, in shard order, every process reading all shards.

    Through the checked reader (:func:`shards.samples`), so a short or damaged shard is one
    ``ShardError`` line naming it.
    """
    for sample in shards.samples(shards.shard_urls(shards_root, "vqa", split), split="none").decode():
        yield sample["json"]["questions"]


# protocol -> (the splits it trains on, the split it scores); test splits have no annotations
PROTOCOLS: dict[str, tuple[tuple[str, ...], str]] = {
    "val": (("train2014",), "val2014"),
    "test-dev": (("train2014", "val2014"), "test-dev2015"),
    "test-std": (("train2014", "val2014"), "test2015"),
}


def answer_vocabulary(shards_root: Path, size: int, splits: Sequence[str] = ("train2014",)) -> list[str]:
    """The ``size`` most frequent normalised answers of the VQA training questions, each as people typed it.

    Classes are counted by their normalised form, but each is emitted as its most frequent cleaned
    surface string: the evaluator compares the typed strings when all ten answers agree, so ten
    "t-shirt" score "t-shirt" and not its normalised "t shirt".
    """
    counts: Counter[str] = Counter()
    surfaces: dict[str, Counter[str]] = defaultdict(Counter)
    for questions in (image for split in splits for image in split_questions(shards_root, split)):
        for question in questions:
            for answer in map(metrics.clean_answer, question["answers"]):
                normalized = metrics.normalize_answer(answer)
                counts[normalized] += 1
                surfaces[normalized][answer] += 1
    return [surfaces[answer].most_common(1)[0][0] for answer, _ in counts.most_common(size)]


def questions_of(shards_root: Path, split: str) -> dict[int, dict]:
    """Every question of ``split`` by id (what the official evaluator reads; a test split's have no answers)."""
    questions = {}
    for image_questions in split_questions(shards_root, split):
        questions |= {q["question_id"]: q for q in image_questions}
    return questions


class VQA(ClassificationTask):
    name = "vqa"
    dataset = "vqa"
    train_split = "train2014"
    eval_splits = ("val2014",)
    outputs = {"answer": "string", "score": "double"}

    def training_split(self, finetune: FinetuneParams) -> tuple[str, ...]:
        return PROTOCOLS[finetune.vqa_protocol][0]

    def scoring_splits(self, finetune: FinetuneParams) -> tuple[str, ...]:
        return (PROTOCOLS[finetune.vqa_protocol][1],)

    def classes(self, shards_root: Path, finetune: FinetuneParams) -> list[str]:
        return answer_vocabulary(shards_root, finetune.answer_vocab, self.training_split(finetune))

    def to_samples(self, spec: LoaderSpec, classes: list[str] | None, epoch: int) -> Callable[[dict], list[dict]]:
        transform = spec.transform()
        answer_index = {metrics.normalize_answer(a): i for i, a in enumerate(classes or [])}  # class -> its index

        def to_samples(sample: dict) -> list[dict]:
            pixels = transform(sample["jpg"].convert("RGB"))
            out = []
            for q in sample["json"]["questions"]:
                target = torch.zeros(len(answer_index))  # a test question (no answers) is only predicted
                for answer, score in metrics.soft_scores(q.get("answers") or []).items():
                    if answer in answer_index:
                        target[answer_index[answer]] = score
                out.append({"pixels": pixels, "text": q["question"], "target": target, "question_id": q["question_id"]})
            return out

        return to_samples

    def head(self, hidden: int, classes: list[str]) -> nn.Module:
        return mlp_head(hidden, 2 * hidden, len(classes))

    def loss(self, module: TaskModel, batch: dict) -> dict[str, torch.Tensor]:
        logits, target = self.logits(module, batch), batch["target"]  # (B, answers) each
        # BCE on soft scores, scaled by the answer count (UNITER / SOHO)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="mean") * target.shape[1]
        return {"loss": loss, "score": target.gather(1, logits.argmax(1, keepdim=True)).mean()}

    def predict(self, module: TaskModel, batch: dict) -> list[str]:
        return [module.answers[i] for i in self.logits(module, batch).argmax(-1).tolist()]

    def serve(self, module: TaskModel, batch: dict) -> dict[str, list]:
        """``predict``'s answer and its sigmoid score (the head is trained per answer, with BCE)."""
        logits = self.logits(module, batch)
        chosen = logits.argmax(-1)
        scores = logits.gather(1, chosen[:, None])[:, 0].sigmoid()
        return {"answer": [module.answers[i] for i in chosen.tolist()], "score": scores.tolist()}

    def submission(self, predictions: dict[str, list]) -> list[dict]:
        """The official ``[{"question_id", "answer"}]`` file of the scored split (EvalAI's format for test-dev/std)."""
        return next(iter(predictions.values()), [])

    def chance(self, batch: dict, classes: list[str] | None, rng: random.Random) -> list[str]:
        return [rng.choice(classes) for _ in batch["question_id"]]

    def targets(self, batch: dict) -> dict[str, list]:
        return {"question_id": batch["question_id"].tolist()}

    def split_context(self, spec: LoaderSpec, split: str) -> dict:
        return {"questions": questions_of(spec.shards, split)}

    def report(self, guesses: list, targets: dict[str, list], context: dict) -> dict:
        ids = targets["question_id"]
        questions = context["questions"]
        if any(questions[q].get("answers") is None for q in ids):  # test-dev / test-std: the server scores it
            report = {"questions": len(ids)}
        else:
            report = metrics.vqa_report(dict(zip(ids, guesses, strict=True)), questions)
        report["_predictions"] = [{"question_id": q, "answer": a} for q, a in zip(ids, guesses, strict=True)]
        return report
