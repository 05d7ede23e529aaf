"""Score the fine-tuned variants of one task (and chance) on its evaluation splits.

Why all variants in one pass: each split is read, decoded and resized once, and every
variant scores the same batches (on the embedded sizes the forward passes dominate, so
this measured no faster there; it saves the decoding of every variant after the first).
Chance draws from its own seeded generators, in the order the batches come, so its numbers
do not depend on which other variants are scored (tested).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from soho.config import Params
from soho.data import shards
from soho.eval import metrics
from soho.models.fusion import load_tokenizer
from soho.tasks.data import SPLITS, answers_for, nlvr2_group, task_pipeline
from soho.tasks.model import TaskModel

CHANCE = "chance"  # the variant name of uniform guessing: no model


def evaluation_batches(params: Params, task: str, split: str, tokenizer, answers=None):
    return task_pipeline(
        task,
        split,
        Path(params.paths.shards),
        tokenizer,
        params.model.image_size,
        params.model.text.max_length,
        params.finetune.eval_batch_size,
        params.seed,
        answers=answers,
        frames=params.finetune.video_frames,
        video_size=params.finetune.video_size,
    )


def retrieval_inputs(params: Params, task: str, split: str, tokenizer) -> dict[str, torch.Tensor]:
    """Each image once (``pixels`` (I,...)), every caption (``ids``/``masks`` (T,L)) and its image (T,)."""
    limit = params.finetune.retrieval_max_images or None
    image_of: dict[int, int] = {}
    pixels, ids, masks, text_image = [], [], [], []
    for batch in evaluation_batches(params, task, split, tokenizer):
        for row, key in enumerate(batch["image_key"].tolist()):
            if key not in image_of:
                if limit is not None and len(pixels) >= limit:
                    continue
                image_of[key] = len(pixels)
                pixels.append(batch["pixels"][row])
            ids.append(batch["input_ids"][row])
            masks.append(batch["attention_mask"][row])
            text_image.append(image_of[key])
    return {
        "pixels": torch.stack(pixels),
        "ids": torch.nn.utils.rnn.pad_sequence(ids, batch_first=True),
        "masks": torch.nn.utils.rnn.pad_sequence(masks, batch_first=True),
        "text_image": torch.tensor(text_image),
    }


@torch.no_grad()
def retrieval_report(module: TaskModel | None, inputs: dict[str, torch.Tensor], params: Params) -> dict:
    """Recall@K of one variant (``None``: chance scores) with each text's top-5 images."""
    texts, images = len(inputs["ids"]), len(inputs["pixels"])
    if module is None:
        generator = torch.Generator().manual_seed(params.seed)
        scores = torch.rand(texts, images, generator=generator)
    else:
        chunk = params.finetune.eval_batch_size * 4
        scores = module.match_matrix(
            inputs["pixels"], inputs["ids"], inputs["masks"], chunk, params.finetune.retrieval_rerank_k
        )
    report = metrics.retrieval_metrics(scores, inputs["text_image"])
    top = scores.topk(min(5, images), dim=1).indices.tolist()
    report["_predictions"] = [
        {"text": i, "image": int(t), "top5_images": r}
        for i, (t, r) in enumerate(zip(inputs["text_image"], top, strict=True))
    ]
    return report


def vqa_questions(params: Params, split: str) -> dict[int, dict]:
    questions = {}
    for url in shards.shard_urls(Path(params.paths.shards), "vqa", split):
        for sample in shards.wds.WebDataset(url, shardshuffle=False, empty_check=False).decode():
            questions |= {q["question_id"]: q for q in sample["json"]["questions"]}
    return questions


def _chance_guess(task: str, batch: dict, answers: list[str] | None, rng: random.Random) -> list:
    if task == "vqa":
        return [rng.choice(answers) for _ in batch["question_id"]]
    return [rng.randrange(3 if task == "snli_ve" else 2) for _ in batch["label"]]


def classification_report(
    modules: dict[str, TaskModel | None],
    params: Params,
    task: str,
    split: str,
    tokenizer,
    answers: list[str] | None,
    rngs: dict[str, random.Random],
) -> dict[str, dict]:
    """VQA, NLVR2 or SNLI-VE metrics of every variant on one split, decoding it once."""
    predictions: dict[str, list] = {name: [] for name in modules}
    labels, groups, question_ids = [], [], []
    for batch in evaluation_batches(params, task, split, tokenizer, answers):
        for name, module in modules.items():
            guess = module.predict(batch) if module is not None else _chance_guess(task, batch, answers, rngs[name])
            predictions[name] += guess
        if task == "vqa":
            question_ids += batch["question_id"].tolist()
        else:
            labels += batch["label"].tolist()
            groups += [nlvr2_group(k) for k in batch.get("key", [])]
    reports = {}
    questions = vqa_questions(params, split) if task == "vqa" else {}
    for name, guesses in predictions.items():
        if task == "vqa":
            report = metrics.vqa_report(dict(zip(question_ids, guesses, strict=True)), questions)
            report["_predictions"] = [
                {"question_id": q, "answer": a} for q, a in zip(question_ids, guesses, strict=True)
            ]
        else:
            report = {"accuracy": metrics.accuracy(guesses, labels)}
            if task == "nlvr2":
                report["consistency"] = metrics.consistency(guesses, labels, groups)
            report["_predictions"] = [
                {"index": i, "prediction": p, "label": y} for i, (p, y) in enumerate(zip(guesses, labels, strict=True))
            ]
        reports[name] = report
    return reports


def evaluate(params: Params, task: str, variants: dict[str, TaskModel | None]) -> dict[str, dict]:
    """{variant: {split: metrics}} for the given fine-tuned modules (``None``: chance) on ``task``."""
    tokenizer = load_tokenizer(params.model.text.init)
    answers = answers_for(Path(params.paths.shards), task, params.finetune.answer_vocab)
    rngs = {name: random.Random(params.seed) for name, module in variants.items() if module is None}
    results: dict[str, dict] = {name: {} for name in variants}
    for split in SPLITS[task][2]:
        if task.startswith("retrieval"):
            inputs = retrieval_inputs(params, task, split, tokenizer)
            for name, module in variants.items():
                results[name][split] = retrieval_report(module, inputs, params)
            continue
        for name, report in classification_report(variants, params, task, split, tokenizer, answers, rngs).items():
            results[name][split] = report
    return results
