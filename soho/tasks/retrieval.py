"""Image-text and video-text retrieval: ITM (+ ITC) fine-tuning, Recall@K on the test split.

Image retrieval reads COCO or Flickr30k (Karpathy splits, 5 captions per image); video
retrieval reads MSR-VTT, whose clips go through the same vision encoder as ``frames``
frames (segment sampling; a temporal position embedding tells them apart). The ranking
and the metrics are the same: ITC similarity over all pairs, then the ITM head re-scores
the top ``finetune.retrieval_rerank_k`` of each query (ALBEF; 0 = ITM on every pair, as SCL's code).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from soho.config import FinetuneParams, ObjectiveParams
from soho.data import loaders, video
from soho.data.loaders import LoaderSpec
from soho.eval import metrics
from soho.models.vision import grid_mask
from soho.objectives import itm
from soho.objectives.pretraining import pretraining_step
from soho.tasks.base import Scoring, Task
from soho.train.distributed import DistContext, sum_across

if TYPE_CHECKING:
    from soho.models.soho import SohoModel
    from soho.tasks.model import TaskModel


# MSR-VTT's JSFusion 1k-A protocol as the shards name its split lists (soho.data.formats)
JSFUSION_1K_A = {"train": "train_9k", "test": "test_1k"}


@functools.cache
def matching_objectives(itc: float) -> ObjectiveParams:
    """Retrieval fine-tunes with pre-training's ITM (+ ITC at ``itc``) alone; built once per weight, not per step."""
    return ObjectiveParams(mlm=0.0, mvm=0.0, itm=1.0, itc=itc)


class Retrieval(Task):
    """Retrieval on ``dataset``'s test split; the pre-trained ITM head scores a pair."""

    def __init__(self, name: str, dataset: str, video: bool = False):
        self.name, self.dataset, self.video = name, dataset, video  # video: its shards hold clips

    eval_splits = ("test",)
    sees_text_alone = False  # without the image every image ties for every caption
    outputs = {"score": "double"}  # the ITM match probability of the pair

    def _protocol_splits(self, finetune: FinetuneParams) -> dict[str, str]:
        """{our split: the shards' split} under MSR-VTT's chosen protocol (1k-A: JSFusion's 9k / 1k lists)."""
        if self.video and finetune.msrvtt_split == "1k-A":
            return JSFUSION_1K_A
        return {}

    def training_split(self, finetune: FinetuneParams) -> str:
        return self._protocol_splits(finetune).get(self.train_split, self.train_split)

    def scoring_splits(self, finetune: FinetuneParams) -> tuple[str, ...]:
        splits = self._protocol_splits(finetune)
        return tuple(splits.get(split, split) for split in self.eval_splits)

    def result_split(self, split: str) -> str:
        # 1k-A's test is *the* test split of the papers' tables (SCL reports 1k-A): the report,
        # the bands and reference/paper.yaml read it as ``test``
        return next((ours for ours, theirs in JSFUSION_1K_A.items() if theirs == split), split)

    def to_samples(self, spec: LoaderSpec, classes: list[str] | None, epoch: int) -> Callable[[dict], list[dict]]:
        transform = spec.transform()
        frame_transform = spec.transform(spec.video_size)

        def to_samples(sample: dict) -> list[dict]:
            clip = next((sample[m] for m in video.CLIP_MEMBERS if m in sample), None)
            if clip is not None:  # a clip: (T, 3, H, W)
                frames = video.sample_frames(clip, spec.frames)
                pixels = torch.stack([frame_transform(f) for f in frames])
            else:
                pixels = transform(sample["jpg"].convert("RGB"))
            captions = sample["json"]["captions"]
            key = sample["__key__"]
            chosen = [loaders.pick(captions, spec.seed, epoch, key)] if spec.shuffle else captions
            return [{"pixels": pixels, "text": c, "image_key": loaders.key_id(key)} for c in chosen]

        return to_samples

    def serving_pixels(self, images: list, spec: LoaderSpec) -> torch.Tensor:
        """A clip's frames for a video model, (T, 3, H, W), as ``to_samples`` makes them; else the image."""
        if not self.video:
            return super().serving_pixels(images, spec)
        frame_transform = spec.transform(spec.video_size)
        return torch.stack([frame_transform(f) for f in video.sample_frames(images[0], spec.frames)])

    def serve(self, module: TaskModel, batch: dict) -> dict[str, list]:
        return {"score": self.predict(module, batch)}

    def head(self, hidden: int, classes: list[str]) -> None:
        return None

    def logits(self, module: TaskModel, batch: dict) -> torch.Tensor:
        pooled = module.pooled(batch["pixels"], batch["input_ids"], batch["attention_mask"], batch.get("pixel_mask"))
        return module.model.itm_head(pooled)  # (B, 2)

    def loss(self, module: TaskModel, batch: dict) -> dict[str, torch.Tensor]:
        if module.text_only:  # no image: the ITM head sees the text alone
            logits = module.model.itm_head(module.pooled(None, batch["input_ids"], batch["attention_mask"]))
            logits = torch.cat([logits, logits])
            labels = torch.cat([torch.ones(len(logits) // 2), torch.zeros(len(logits) // 2)]).long()
            loss, acc = itm.itm_loss(logits, labels)
            return {"loss": loss, "acc": acc}
        # ITM (+ ITC, whose similarities then pick hard negatives): the pre-training step itself
        out = pretraining_step(
            module.model, batch, matching_objectives(module.itc_weight), special_ids=None, mask_id=-1
        )
        return {"loss": out["loss"], "acc": out["itm_acc"]} | ({"itc_acc": out["itc_acc"]} if "itc_acc" in out else {})

    def predict(self, module: TaskModel, batch: dict) -> list[float]:
        return self.logits(module, batch).softmax(-1)[:, 1].tolist()

    def evaluate_split(self, modules: dict[str, TaskModel | None], split: str, scoring: Scoring) -> dict[str, dict]:
        finetune = scoring.finetune
        inputs = self.inputs(scoring.spec, split, finetune.retrieval_max_images or None)
        seed, ctx = scoring.spec.seed, scoring.ctx
        return {name: recall_report(module, inputs, seed, finetune, ctx) for name, module in modules.items()}

    def inputs(self, spec: LoaderSpec, split: str, limit: int | None) -> dict[str, torch.Tensor]:
        """Each image once (``pixels`` (I,...)), every caption (``ids``/``masks`` (T,L)) and its image (T,)."""
        image_of: dict[int, int] = {}
        pixels, ids, masks, text_image = [], [], [], []
        for batch in self.pipeline(split, spec, readers="workers"):
            for row, key in enumerate(batch["image_key"].tolist()):
                if key not in image_of:
                    if limit is not None and len(pixels) >= limit:
                        continue
                    image_of[key] = len(pixels)
                    pixels.append(loaders.unpad(batch, row))
                ids.append(batch["input_ids"][row])
                masks.append(batch["attention_mask"][row])
                text_image.append(image_of[key])
        if spec.resize == "square":
            images = {"pixels": torch.stack(pixels)}
        else:  # keep-ratio images differ in size: re-padded together, with their mask
            images = dict(zip(("pixels", "pixel_mask"), loaders.pad_images(pixels), strict=True))
        return {
            **images,
            "ids": torch.nn.utils.rnn.pad_sequence(ids, batch_first=True),
            "masks": torch.nn.utils.rnn.pad_sequence(masks, batch_first=True),
            "text_image": torch.tensor(text_image),
        }


@torch.no_grad()
def recall_report(
    module: TaskModel | None,
    inputs: dict[str, torch.Tensor],
    seed: int,
    finetune: FinetuneParams,
    ctx: DistContext = DistContext(),
) -> dict:
    """Recall@K of one variant (``None``: chance scores) with each text's top-5 images (``ctx``: the ranks
    that share its ITM pairs)."""
    texts, images = len(inputs["ids"]), len(inputs["pixels"])
    if module is None:
        scores = torch.rand(texts, images, generator=torch.Generator().manual_seed(seed))
    else:
        chunk = finetune.eval_batch_size * 4
        scores = match_matrix(
            module,
            inputs["pixels"],
            inputs["ids"],
            inputs["masks"],
            chunk,
            module.rerank_k,  # the variant's protocol (finetune.by_variant)
            inputs.get("pixel_mask"),
            ctx,
        )
    report = metrics.retrieval_metrics(scores, inputs["text_image"])
    top = scores.topk(min(5, images), dim=1).indices.tolist()
    report["_predictions"] = [
        {"text": i, "image": int(t), "top5_images": r}
        for i, (t, r) in enumerate(zip(inputs["text_image"], top, strict=True))
    ]
    return report


@torch.no_grad()
def match_matrix(
    module: TaskModel,
    pixels: torch.Tensor,
    ids: torch.Tensor,
    masks: torch.Tensor,
    chunk: int,
    rerank_k: int = 0,
    pixel_mask: torch.Tensor | None = None,
    ctx: DistContext = DistContext(),
) -> torch.Tensor:
    """(texts, images) retrieval scores; each image goes through the CNN once.

    Under torchrun (``ctx``) each rank encodes every image but runs ITM on every
    ``world_size``-th pair only, and the ranks' scores are summed: the pairs' fusion passes,
    which are nearly all of the cost (COCO 5k: 3.8 million pairs at top-128), are split.

    ``rerank_k == 0``: the ITM match probability of every pair (SCL's ``compute_irtr_recall``).
    ``rerank_k > 0``: ITC similarity ranks every pair, then ITM re-scores the top-k
    images of each text and the top-k texts of each image (ALBEF's protocol); the
    re-scored pairs (in [0, 1]) rank above the rest (ITC cosine shifted to [-4, -2]).
    Why: ITM costs one fusion pass per pair, so all pairs grow as texts x images.
    """
    model = module.model
    device = next(module.parameters()).device
    ids, masks = ids.to(device), masks.to(device)
    if module.text_only:  # the score cannot depend on the image
        scores = torch.empty(len(ids), len(pixels))
        for start in range(0, len(ids), chunk):
            pooled = module.pooled(None, ids[start : start + chunk], masks[start : start + chunk])
            scores[start : start + chunk] = model.itm_head(pooled).softmax(-1)[:, 1:2].float().cpu()
        return scores
    visual, layout = encode_images(model, pixels, pixel_mask, chunk, device)
    valid = grid_mask(None if pixel_mask is None else pixel_mask.to(device), layout)
    if not rerank_k or rerank_k >= len(pixels):
        pairs = torch.cartesian_prod(torch.arange(len(ids)), torch.arange(len(pixels)))
        scores = torch.empty(len(ids), len(pixels))
    else:
        scores = itc_similarity(module, visual, layout, ids, masks, chunk, valid).cpu() - 3.0
        candidates = torch.zeros_like(scores, dtype=torch.bool)
        candidates.scatter_(1, scores.topk(rerank_k, dim=1).indices, True)
        candidates.scatter_(0, scores.topk(min(rerank_k, len(ids)), dim=0).indices, True)
        pairs = candidates.nonzero()
    mine = pairs[ctx.rank :: ctx.world_size]
    matched = torch.zeros(len(ids), len(pixels))  # this rank's ITM probabilities, 0 elsewhere
    for start in range(0, len(mine), chunk):
        text, image = mine[start : start + chunk].unbind(1)
        cells = None if valid is None else valid[image]
        hidden = model.fuse(ids[text], masks[text], visual[image].float(), layout, visual_valid=cells)
        pooled = model.pool(hidden, masks[text], cells)
        matched[text, image] = model.itm_head(pooled).softmax(-1)[:, 1].float().cpu()
    text, image = pairs.unbind(1)
    scores[text, image] = sum_across(matched, ctx)[text, image]  # each pair was scored by one rank
    return scores


@torch.no_grad()
def encode_images(
    model: SohoModel, pixels: torch.Tensor, pixel_mask: torch.Tensor | None, chunk: int, device: torch.device
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Every image's visual tokens (I, N, D), encoded ``chunk`` images at a time on ``device``, and the grid layout.

    Why chunks: the CNN's first activations for 5,000 COCO test images at 600 x 1000 would
    need about 47 GB at once. On a GPU the tokens are kept in bf16 (half the memory of the
    cache the fusion passes then read); on the CPU in float32, as trained.
    """
    keep = torch.bfloat16 if device.type == "cuda" else torch.float32
    parts, layout = [], None
    for start in range(0, len(pixels), chunk):
        mask = None if pixel_mask is None else pixel_mask[start : start + chunk].to(device)
        visual, _, layout = model.encode_image(pixels[start : start + chunk].to(device), mask)
        parts.append(visual.to(keep))
    return torch.cat(parts), layout


def itc_similarity(
    module: TaskModel, visual, layout, ids: torch.Tensor, masks: torch.Tensor, chunk: int, valid=None
) -> torch.Tensor:
    """(texts, images) cosine similarity of the ITC embeddings (``valid``: real grid cells, None: all)."""
    model = module.model
    cells = [None] * len(visual.split(chunk)) if valid is None else valid.split(chunk)
    chunks = zip(visual.split(chunk), cells, strict=True)
    images = torch.cat([model.image_embedding(v.float(), layout, c) for v, c in chunks])  # float: a bf16 cache
    texts = torch.cat([model.text_embedding(i, m) for i, m in zip(ids.split(chunk), masks.split(chunk), strict=True)])
    return texts.float() @ images.float().t()
