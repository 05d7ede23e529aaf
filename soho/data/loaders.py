"""Sample -> tensor mapping for the shard pipelines: decode, resize, normalise, tokenise, batch.

Why: the choice of caption for an image is a pure function of (seed, epoch, key), not of
a global RNG, so the data order and content of an epoch are reproducible and a resumed
run can skip exactly the batches it already consumed.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms import v2

from soho.config import FinetuneParams, ModelParams, OptimParams
from soho.data import shards
from soho.data.shard_checks import Split

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


PAD_MULTIPLE = 32  # the CNN's stride: padded sizes keep every grid cell whole (SOHO pads to 32 too)


def image_transform(size: int, resize: str = "square", max_long_side: int = 1000) -> v2.Compose:
    """Resize and normalise. No horizontal flip: captions speak of left and right.

    ``square``: ``size`` x ``size``. ``keep_ratio``: the aspect ratio kept, short side ``size``
    unless the long side would pass ``max_long_side`` (then the long side is that), as
    SOHO's 600 x 1000 input; :func:`pad_images` batches the differing sizes.
    """
    if resize == "keep_ratio":
        sizing = v2.Resize(size, max_size=max_long_side, antialias=True)
    else:
        sizing = v2.Resize((size, size), antialias=True)
    return v2.Compose(
        [v2.ToImage(), sizing, v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def multi_scale_transform(short_sides: tuple[int, int], max_long_side: int) -> v2.Compose:
    """SOHO's multi-scale training resize (mmdet ``Resize``, ``multiscale_mode='range'``, ``keep_ratio``):
    each image's short side a uniform integer in ``[low, high]``, the long side at most ``max_long_side``.

    Drawn from torch's generator, which the DataLoader seeds per worker, so a run repeats.
    """
    low, high = short_sides
    sizing = v2.RandomShortestSize(list(range(low, high + 1)), max_size=max_long_side, antialias=True)
    return v2.Compose(
        [v2.ToImage(), sizing, v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def key_id(key: str) -> int:
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def pick(options: list, seed: int, epoch: int, key: str):
    return options[random.Random(f"{seed}:{epoch}:{key}").randrange(len(options))]


@dataclass(frozen=True)
class LoaderSpec:
    """How every pipeline (pre-training, fine-tuning, evaluation) turns shards into batches.

    Why one value: the readers, the training loops and the evaluation all need the same
    handful of settings, and passing them one by one made 12-parameter signatures.
    ``shuffle`` is the shuffle buffer (0: the shards' order, for evaluation).
    """

    shards: Path
    tokenizer: Any
    image_size: int
    max_length: int
    batch_size: int
    seed: int
    shuffle: int = 0
    num_workers: int = 0
    frames: int = 4  # video: frames sampled per clip
    video_size: int | None = None  # video: frame side (None: image_size)
    resize: str = "square"  # model.vision.resize
    max_long_side: int = 1000  # model.vision.max_long_side (keep_ratio)
    train_scales: tuple[int, int] | None = None  # finetune.train_scales (training pipelines only)
    train_max_long_side: int = 1333  # finetune.train_max_long_side

    @classmethod
    def build(
        cls,
        shards_root: Path,
        tokenizer,
        model: ModelParams,
        seed: int,
        optim: OptimParams | None = None,
        batch_size: int | None = None,
        finetune: FinetuneParams | None = None,
    ) -> LoaderSpec:
        """Training batches when ``optim`` is given (its batch size, shuffle buffer, workers), else evaluation order."""
        video = {"frames": finetune.video_frames, "video_size": finetune.video_size} if finetune else {}
        train = {"shuffle": optim.shuffle_buffer, "num_workers": optim.num_workers} if optim else {}
        size = batch_size if batch_size is not None else optim.batch_size
        sizing = {"resize": model.vision.resize, "max_long_side": model.vision.max_long_side}
        if optim is not None and finetune is not None and finetune.train_scales is not None:
            sizing |= {"train_scales": finetune.train_scales, "train_max_long_side": finetune.train_max_long_side}
        return cls(
            Path(shards_root),
            tokenizer,
            model.image_size,
            model.text.max_length,
            size,
            seed,
            **train,
            **video,
            **sizing,
        )

    def transform(self, size: int | None = None) -> v2.Compose:
        """The image transform of this pipeline (``size``: another short side, e.g. video frames).

        A training pipeline with ``train_scales`` draws each image's size (multi-scale training).
        """
        if self.train_scales is not None and size is None:
            return multi_scale_transform(self.train_scales, self.train_max_long_side)
        return image_transform(size or self.image_size, self.resize, self.max_long_side)

    def collate(self) -> Callable[[list[dict]], dict]:
        return text_collate(self.tokenizer, self.max_length, pad=self.resize == "keep_ratio")

    def loader(self, pipeline) -> torch.utils.data.DataLoader:
        """The DataLoader the training loop iterates (the pipeline batches itself)."""
        return torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=self.num_workers)


def caption_pipeline(
    spec: LoaderSpec, datasets: list[str], split: str, epoch: int = 0, readers: Split = "ranks"
) -> shards.wds.WebDataset:
    """Image-caption batches (pixels, input_ids, attention_mask, image_key) from captioned shards.

    ``readers``: how the shards are divided (:data:`soho.data.shard_checks.Split`).
    """
    urls = [u for name in datasets for u in shards.shard_urls(spec.shards, name, split)]
    transform = spec.transform()

    def to_sample(sample: dict) -> dict:
        key = sample["__key__"]
        return {
            "pixels": transform(sample["jpg"].convert("RGB")),
            "text": pick(sample["json"]["captions"], spec.seed, epoch, key),
            "image_key": key_id(key),
        }

    return shards.pipeline(
        urls, to_sample, spec.batch_size, spec.collate(), shuffle=spec.shuffle, seed=spec.seed + epoch, split=readers
    )


def pad_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (..., 3, H_i, W_i) of differing sizes -> (B, ..., 3, H, W) zero-padded at the bottom and right, and
    the (B, ..., H, W) bool mask of real pixels; H and W are the largest, rounded up to :data:`PAD_MULTIPLE`.
    """
    height = -(-max(i.shape[-2] for i in images) // PAD_MULTIPLE) * PAD_MULTIPLE
    width = -(-max(i.shape[-1] for i in images) // PAD_MULTIPLE) * PAD_MULTIPLE
    first = images[0]
    pixels = first.new_zeros((len(images), *first.shape[:-2], height, width))
    mask = torch.zeros((len(images), *first.shape[:-3], height, width), dtype=torch.bool)
    for row, image in enumerate(images):
        h, w = image.shape[-2:]
        pixels[row, ..., :h, :w] = image
        mask[row, ..., :h, :w] = True
    return pixels, mask


def unpad(batch: dict, row: int) -> torch.Tensor:
    """One row's pixels without its batch's padding (to re-pad with rows of other batches)."""
    pixels = batch["pixels"][row]
    if "pixel_mask" not in batch:
        return pixels
    mask = batch["pixel_mask"][row].reshape(-1, *pixels.shape[-2:]).any(0)  # (H, W), every frame
    return pixels[..., : int(mask.any(1).sum()), : int(mask.any(0).sum())]


def text_collate(tokenizer, max_length: int, pad: bool = False) -> Callable[[list[dict]], dict]:
    """Stack tensors, tokenise the ``text`` field (padded to the longest, capped at ``max_length``).

    With ``pad`` (``keep_ratio`` images), ``pixels`` are padded by :func:`pad_images`, which adds
    ``pixel_mask``; without it (square images) they are stacked and get no mask.
    """

    def collate(samples: list[dict]) -> dict:
        encoded = tokenizer(
            [s["text"] for s in samples], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batch = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        for key in samples[0]:
            if key == "text" or key.startswith("__"):
                continue
            values = [s[key] for s in samples]
            if key == "pixels" and pad:
                batch["pixels"], batch["pixel_mask"] = pad_images(values)
            else:
                batch[key] = torch.stack(values) if torch.is_tensor(values[0]) else torch.tensor(values)
        return batch

    return collate
