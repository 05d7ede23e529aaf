"""Per-task sample -> tensor mapping over the shards (one entry per question / hypothesis / pair).

Why per task: each downstream set has its own sample layout (see DESIGN.md, "Shards");
the tensors the models consume are the same everywhere (pixels, input_ids, attention_mask).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from soho.data import loaders, shards
from soho.eval.metrics import normalize_answer, soft_scores

SPLITS = {  # task -> (dataset, train split, evaluation splits)
    "retrieval_coco": ("coco", "train", ("test",)),
    "retrieval_flickr30k": ("flickr30k", "train", ("test",)),
    "retrieval_msrvtt": ("msrvtt", "train", ("test",)),
    "vqa": ("vqa", "train2014", ("val2014",)),
    "nlvr2": ("nlvr2", "train", ("dev", "test1")),
    "snli_ve": ("snli_ve", "train", ("dev", "test")),
}
VE_LABELS = ("entailment", "neutral", "contradiction")


def answer_vocabulary(shards_root: Path, size: int) -> list[str]:
    """The ``size`` most frequent normalised answers of the VQA training questions."""
    counts: Counter[str] = Counter()
    for url in shards.shard_urls(shards_root, "vqa", "train2014"):
        for sample in shards.wds.WebDataset(url, shardshuffle=False, empty_check=False).decode():
            for question in sample["json"]["questions"]:
                counts.update(normalize_answer(a) for a in question["answers"])
    return [answer for answer, _ in counts.most_common(size)]


def answers_for(shards_root: Path, task: str, size: int) -> list[str] | None:
    """The classifier's classes: VQA's answer vocabulary; ``None`` for every other task."""
    return answer_vocabulary(shards_root, size) if task == "vqa" else None


def nlvr2_group(key: str) -> str:
    """Consistency groups one sentence over its image pairs: ``split-set-pair-sentence`` minus the pair."""
    parts = key.split("-")
    return "-".join(parts[:2] + parts[3:]) if len(parts) == 4 else key


def task_pipeline(
    task: str,
    split: str,
    shards_root: Path,
    tokenizer,
    image_size: int,
    max_length: int,
    batch_size: int,
    seed: int,
    epoch: int = 0,
    shuffle: int = 0,
    answers: list[str] | None = None,
    frames: int = 4,
    video_size: int | None = None,
):
    """Batches for ``task`` on ``split``; training batches carry targets, evaluation ones ids too.

    Video samples (``gif``) become ``frames`` frames (B, T, 3, H, W) of side ``video_size``
    (default ``image_size``), see ``loaders.sample_frames``.
    """
    dataset = SPLITS[task][0]
    urls = shards.shard_urls(shards_root, dataset, split)
    transform = loaders.image_transform(image_size)
    frame_transform = loaders.image_transform(video_size or image_size)
    collate = loaders.text_collate(tokenizer, max_length)
    answer_index = {a: i for i, a in enumerate(answers or [])}

    if task.startswith("retrieval"):

        def to_samples(sample: dict) -> list[dict]:
            if "gif" in sample:
                pixels = torch.stack([frame_transform(f) for f in loaders.sample_frames(sample["gif"], frames)])
            else:
                pixels = transform(sample["jpg"].convert("RGB"))
            captions = sample["json"]["captions"]
            chosen = [loaders.pick(captions, seed, epoch, sample["__key__"])] if shuffle else captions
            return [{"pixels": pixels, "text": c, "image_key": loaders.key_id(sample["__key__"])} for c in chosen]

    elif task == "vqa":

        def to_samples(sample: dict) -> list[dict]:
            pixels = transform(sample["jpg"].convert("RGB"))
            out = []
            for q in sample["json"]["questions"]:
                target = torch.zeros(len(answer_index))
                for answer, score in soft_scores(q["answers"]).items():
                    if answer in answer_index:
                        target[answer_index[answer]] = score
                out.append({"pixels": pixels, "text": q["question"], "target": target, "question_id": q["question_id"]})
            return out

    elif task == "nlvr2":

        def to_samples(sample: dict) -> list[dict]:
            pixels = torch.stack([transform(sample[k].convert("RGB")) for k in ("img0.png", "img1.png")])
            label = int(bool(sample["json"]["label"]))
            return [{"pixels": pixels, "text": sample["json"]["sentence"], "label": label, "key": sample["__key__"]}]

    elif task == "snli_ve":

        def to_samples(sample: dict) -> list[dict]:
            pixels = transform(sample["jpg"].convert("RGB"))
            return [
                {"pixels": pixels, "text": h["hypothesis"], "label": VE_LABELS.index(h["label"])}
                for h in sample["json"]["hypotheses"]
            ]

    else:
        raise ValueError(f"unknown task {task!r} (known: {sorted(SPLITS)})")

    def collate_keys(samples: list[dict]) -> dict:
        keys = [s.pop("key") for s in samples] if "key" in samples[0] else None
        batch = collate(samples)
        if keys is not None:
            batch["key"] = keys
        return batch

    return shards.pipeline(urls, to_samples, batch_size, collate_keys, shuffle=shuffle, seed=seed + epoch, expand=True)
