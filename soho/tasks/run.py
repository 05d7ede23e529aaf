"""Fine-tune one task from the pre-trained checkpoint (and its baselines), then evaluate it.

Layout: ``checkpoints/finetune/<task>/<variant>/{model.safetensors,answers.json,train/}``;
``train/`` holds the resumable step checkpoints of the shared training loop.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from soho.config import Params
from soho.data import shards
from soho.data.atomic import atomic_file, write_text
from soho.eval import metrics
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.tasks.data import SPLITS, answer_vocabulary, nlvr2_group, task_pipeline
from soho.tasks.model import TaskModel
from soho.train import checkpoint
from soho.train.distributed import DistContext
from soho.train.loop import Trainer
from soho.train.pretrain import fingerprint, loop_config, model_spec, variant_params
from soho.train.pretrain import variant_dir as pretrain_dir

# Fine-tuning variant -> the pre-training variant it starts from (``scratch``: none).
STARTS_FROM = {"pretrained": "soho", "text_only": "soho", "pretrained_scl": "scl"}


def variant_dir(params: Params, task: str, variant: str) -> Path:
    return Path(params.paths.checkpoints) / "finetune" / task / variant


def start_fingerprint(params: Params, variant: str) -> str:
    """What the variant's starting point depends on: the pre-training that made it (or none)."""
    start = STARTS_FROM.get(variant)
    return fingerprint(variant_params(params, start)) if start else fingerprint(params)


def build(params: Params, task: str, variant: str, answers: list[str] | None) -> TaskModel:
    """SOHO + head, from the pre-trained weights of ``STARTS_FROM[variant]``; ``scratch`` from none."""
    torch.manual_seed(params.seed)
    model = SohoModel(model_spec(params))
    if variant in STARTS_FROM:
        checkpoint.load_weights(model, pretrain_dir(params, STARTS_FROM[variant]) / "model.safetensors")
    return TaskModel(
        model, task, text_only=variant == "text_only", answers=answers, itc_weight=params.finetune.retrieval_itc
    )


def finetune(params: Params, task: str, variant: str, ctx: DistContext, on_log=None, progress: bool = True) -> dict:
    """Train ``variant`` on ``task``'s training split; returns the last logged training metrics."""
    out = variant_dir(params, task, variant)
    train_dir = out / "train"
    current = start_fingerprint(params, variant) + task + variant + json.dumps(params.finetune.model_dump(mode="json"))
    checkpoint.start_over_if_changed(train_dir, current, ctx.is_main)
    if checkpoint.is_finished(train_dir, current) and (out / "model.safetensors").exists():
        return {}  # trained by an earlier, interrupted run of the stage
    answers = _answers(params, task)
    tokenizer = load_tokenizer(params.model.text.init)
    module = build(params, task, variant, answers)
    optim = params.finetune.optim
    trainer = Trainer(
        module,
        module.model.trainable_groups() | {"head": _head_params(module)},
        loop_config(optim, params.seed),
        train_dir,
        ctx,
        on_log,
        progress,
    )

    def batches(epoch: int):
        pipeline = task_pipeline(
            task,
            SPLITS[task][1],
            Path(params.paths.shards),
            tokenizer,
            params.model.image_size,
            params.model.text.max_length,
            optim.batch_size,
            params.seed,
            epoch,
            shuffle=optim.shuffle_buffer,
            answers=answers,
            frames=params.finetune.video_frames,
        )
        return torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=optim.num_workers)

    final = trainer.fit(batches)
    if ctx.is_main:
        with atomic_file(out / "model.safetensors") as tmp:
            checkpoint.save_model(module, str(tmp))
        write_text(out / "answers.json", json.dumps(answers or []))
        checkpoint.finish(train_dir, current)
    return final


def _head_params(module: TaskModel) -> list[torch.nn.Parameter]:
    return list(module.head.parameters()) if module.head is not None else []


def load_finetuned(params: Params, task: str, variant: str) -> TaskModel:
    folder = variant_dir(params, task, variant)
    answers = json.loads((folder / "answers.json").read_text()) if (folder / "answers.json").exists() else None
    module = build(params, task, "scratch", answers)  # weights come from the fine-tuned file
    module.text_only = variant == "text_only"
    checkpoint.load_weights(module, folder / "model.safetensors")
    return module.eval()


def _batches(params: Params, task: str, split: str, tokenizer, answers=None):
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
    )


@torch.no_grad()
def retrieval_scores(module: TaskModel | None, params: Params, task: str, split: str, tokenizer):
    """(texts, images) retrieval scores and each text's image; ``module=None`` gives chance scores."""
    limit = params.finetune.retrieval_max_images or None
    image_of: dict[int, int] = {}
    pixels, ids, masks, text_image = [], [], [], []
    for batch in _batches(params, task, split, tokenizer):
        for row, key in enumerate(batch["image_key"].tolist()):
            if key not in image_of:
                if limit is not None and len(pixels) >= limit:
                    continue
                image_of[key] = len(pixels)
                pixels.append(batch["pixels"][row])
            ids.append(batch["input_ids"][row])
            masks.append(batch["attention_mask"][row])
            text_image.append(image_of[key])
    text_image = torch.tensor(text_image)
    if module is None:
        generator = torch.Generator().manual_seed(params.seed)
        return torch.rand(len(ids), len(pixels), generator=generator), text_image
    ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    masks = torch.nn.utils.rnn.pad_sequence(masks, batch_first=True)
    chunk = params.finetune.eval_batch_size * 4
    scores = module.match_matrix(torch.stack(pixels), ids, masks, chunk, params.finetune.retrieval_rerank_k)
    return scores, text_image


def _answers(params: Params, task: str) -> list[str] | None:
    return answer_vocabulary(Path(params.paths.shards), params.finetune.answer_vocab) if task == "vqa" else None


def _vqa_questions(params: Params, split: str) -> dict[int, dict]:
    questions = {}
    for url in shards.shard_urls(Path(params.paths.shards), "vqa", split):
        for sample in shards.wds.WebDataset(url, shardshuffle=False, empty_check=False).decode():
            questions |= {q["question_id"]: q for q in sample["json"]["questions"]}
    return questions


def evaluate(params: Params, task: str, variant: str | None) -> dict:
    """Metrics of the fine-tuned ``variant`` (``None`` = chance) on every evaluation split of ``task``."""
    tokenizer = load_tokenizer(params.model.text.init)
    module = load_finetuned(params, task, variant) if variant else None
    answers = module.answers if module else _answers(params, task)
    rng = random.Random(params.seed)
    results: dict[str, dict] = {}
    for split in SPLITS[task][2]:
        if task.startswith("retrieval"):
            scores, text_image = retrieval_scores(module, params, task, split, tokenizer)
            results[split] = metrics.retrieval_metrics(scores, text_image)
            top = scores.topk(min(5, scores.shape[1]), dim=1).indices.tolist()
            results[split]["_predictions"] = [
                {"text": i, "image": int(t), "top5_images": r}
                for i, (t, r) in enumerate(zip(text_image, top, strict=True))
            ]
            continue
        predictions, labels, groups = [], [], []
        for batch in _batches(params, task, split, tokenizer, answers):
            guess = module.predict(batch) if module else None
            if task == "vqa":
                for i, qid in enumerate(batch["question_id"].tolist()):
                    predictions.append({"question_id": qid, "answer": guess[i] if guess else rng.choice(answers)})
            else:
                labels += batch["label"].tolist()
                predictions += (
                    guess if guess else [rng.randrange(3 if task == "snli_ve" else 2) for _ in batch["label"]]
                )
                groups += [nlvr2_group(k) for k in batch.get("key", [])]
        if task == "vqa":
            questions = _vqa_questions(params, split)
            results[split] = metrics.vqa_report({p["question_id"]: p["answer"] for p in predictions}, questions)
            results[split]["_predictions"] = predictions
        else:
            results[split] = {"accuracy": metrics.accuracy(predictions, labels)}
            if task == "nlvr2":
                results[split]["consistency"] = metrics.consistency(predictions, labels, groups)
            results[split]["_predictions"] = [
                {"index": i, "prediction": p, "label": y}
                for i, (p, y) in enumerate(zip(predictions, labels, strict=True))
            ]
    return results
