"""Sample -> tensor mapping for the shard pipelines: decode, resize, normalise, tokenise, batch.

Why: the choice of caption for an image is a pure function of (seed, epoch, key), not of
a global RNG, so the data order and content of an epoch are reproducible and a resumed
run can skip exactly the batches it already consumed.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision.transforms import v2

from soho.data import shards

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def image_transform(size: int) -> v2.Compose:
    """Resize to a square and normalise. No horizontal flip: captions speak of left and right."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def sample_frames(clip, count: int) -> list:
    """``count`` RGB frames of a decoded clip (a multi-frame PIL image such as a GIF).

    Segment sampling (TSN): split the clip into ``count`` equal segments and take each
    segment's middle frame, so the frames span the whole clip whatever its length; a clip
    shorter than ``count`` repeats frames.
    """
    total = getattr(clip, "n_frames", 1)
    frames = []
    for i in range(count):
        clip.seek(min(total - 1, int((i + 0.5) * total / count)))
        frames.append(clip.convert("RGB"))
    return frames


def key_id(key: str) -> int:
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def pick(options: list, seed: int, epoch: int, key: str):
    return options[random.Random(f"{seed}:{epoch}:{key}").randrange(len(options))]


def caption_pipeline(
    shards_root: Path,
    datasets: list[str],
    split: str,
    tokenizer,
    image_size: int,
    max_length: int,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: int = 0,
) -> shards.wds.WebDataset:
    """Image-caption batches (pixels, input_ids, attention_mask, image_key) from captioned shards."""
    urls = [u for name in datasets for u in shards.shard_urls(shards_root, name, split)]
    transform = image_transform(image_size)

    def to_sample(sample: dict) -> dict:
        key = sample["__key__"]
        return {
            "pixels": transform(sample["jpg"].convert("RGB")),
            "text": pick(sample["json"]["captions"], seed, epoch, key),
            "image_key": key_id(key),
        }

    return shards.pipeline(
        urls, to_sample, batch_size, text_collate(tokenizer, max_length), shuffle=shuffle, seed=seed + epoch
    )


def text_collate(tokenizer, max_length: int) -> Callable[[list[dict]], dict]:
    """Stack tensors, tokenise the ``text`` field (padded to the longest, capped at ``max_length``)."""

    def collate(samples: list[dict]) -> dict:
        encoded = tokenizer(
            [s["text"] for s in samples], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batch = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        for key in samples[0]:
            if key == "text" or key.startswith("__"):
                continue
            values = [s[key] for s in samples]
            batch[key] = torch.stack(values) if torch.is_tensor(values[0]) else torch.tensor(values)
        return batch

    return collate
