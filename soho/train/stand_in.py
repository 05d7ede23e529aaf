"""The embedded profile's ImageNet: the reduced ResNet first learns to name the shapes in generated scenes.

Why: SOHO's CNN starts from ImageNet weights. The embedded profile downloads nothing, and a CNN
from random weights learns so slowly that image-text alignment has hardly begun when its 200
pre-training steps end (issue 13): in 60 steps of image-text contrast alone the loss went from
3.47 to 2.9 from a random CNN and to 1.3 from one that had first learned to name shapes. Like
ImageNet, the stand-in is an image set of its own (fresh scenes of the generated world, from a
random stream that no data set draws from) labelled with object classes; its weights are a
torchvision ResNet state dict, read by the same strict loader as torchvision's ImageNet file.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import torch
from sklearn.metrics import average_precision_score
from torch import nn
from torch.nn import functional as F
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock
from tqdm import tqdm

from soho.config import Params
from soho.data.embedded import scenes
from soho.data.embedded.writing import sub_rng
from soho.data.integrity import sha256_of
from soho.data.loaders import image_transform
from soho.io import write_bytes
from soho.train.loop import warmup_linear
from soho.train.variants import code_digest

# The object classes: a colour and a shape, as ImageNet's are objects. Multi-label, because a
# scene holds 1..data.max_objects things (its size and place are not labelled).
CLASSES = tuple(f"{color} {shape}" for color in scenes.COLORS for shape in scenes.SHAPES)
CODE = ("train/stand_in.py", "data/embedded/scenes.py", "data/loaders.py")  # what the weights depend on
STREAM = "stand-in"  # the scenes' random stream (writing.sub_rng): no data set of the pipeline uses it


def labelled_scenes(
    count: int, rng: random.Random, side: int, size: int, max_objects: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` fresh scenes: images (count, 3, size, size), normalised as the loaders do, and
    multi-hot labels (count, len(CLASSES)).

    Rendered at ``side`` (``data.image_size``) and resized to ``size`` (``model.image_size``), the
    path the generated data sets' images take.
    """
    transform = image_transform(size)
    images, labels = [], torch.zeros(count, len(CLASSES))
    for row in range(count):
        scene = scenes.sample_scene(rng, max_objects)
        images.append(transform(scenes.render(scene, side, rng)))
        for thing in scene.things:
            labels[row, CLASSES.index(f"{thing.color} {thing.shape}")] = 1.0
    return torch.stack(images), labels


def build(layers: tuple[int, ...]) -> resnet.ResNet:
    """The reduced BasicBlock ResNet of ``model.vision`` with a classifier over CLASSES (torchvision's ``fc``)."""
    return resnet.ResNet(BasicBlock, list(layers), num_classes=len(CLASSES))


@torch.no_grad()
def scores(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> dict[str, float]:
    """``map``: mean over the classes present of the average precision (scikit-learn's, as VOC's
    classification score, threshold-free); ``exact``: scenes whose whole set of objects is named
    right at logit 0."""
    net.eval()
    logits = torch.cat([net(images[i : i + batch]) for i in range(0, len(images), batch)])  # (N, classes)
    exact = ((logits > 0).float() == labels).all(1).float().mean().item()
    present = labels.sum(0) > 0  # (classes,) a class no scene holds has no precision to average
    ap = average_precision_score(labels[:, present].numpy(), logits[:, present].numpy(), average="macro")
    return {"map": float(ap), "exact": exact}


def train(params: Params, progress: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Train the stand-in under ``params.backbone``; returns (torchvision state dict, held-out scores)."""
    cfg, data = params.backbone, params.data
    rng = sub_rng(params.seed, STREAM)
    size = params.model.image_size
    images, labels = labelled_scenes(cfg.images, rng, data.image_size, size, data.max_objects)
    heldout = labelled_scenes(cfg.heldout, rng, data.image_size, size, data.max_objects)
    torch.manual_seed(params.seed)
    net = build(params.model.vision.layers)
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=cfg.lr
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(cfg.warmup_steps, cfg.steps))
    draw = torch.Generator().manual_seed(params.seed)
    net.train()
    bar = tqdm(range(cfg.steps), desc="stand-in", disable=not progress)
    for _ in bar:
        rows = torch.randint(len(images), (cfg.batch_size,), generator=draw)  # (B,) scenes, with replacement
        loss = F.binary_cross_entropy_with_logits(net(images[rows]), labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    held = scores(net, *heldout)
    untrained = scores(build(params.model.vision.layers), *heldout)  # the same net at its random start
    metrics = {"final_loss": loss.item(), **{f"heldout_{k}": v for k, v in held.items()}}
    metrics |= {f"untrained_{k}": v for k, v in untrained.items()}
    return net.state_dict(), metrics


def make(params: Params, dest: Path, previous: dict | None = None, progress: bool = True) -> dict:
    """The stand-in's weights at ``dest`` (written atomically) and their record for ``weights/sources.json``.

    ``previous`` (the record the last run left): kept, not trained again, when it was made by the
    same settings and code and ``dest`` still has its sha256. Why: the ``weights`` stage re-runs
    whenever any ``model`` key changes, most of which the stand-in does not read.
    """
    made_by = fingerprint(params)
    if previous and previous.get("fingerprint") == made_by and dest.is_file() and sha256_of(dest) == previous["sha256"]:
        return previous
    state, metrics = train(params, progress)
    buffer = io.BytesIO()  # not torch.save(path): the zip's inner folder is named after the (scratch) file
    torch.save(state, buffer)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(dest, buffer.getvalue())
    record = {"trained": "soho.train.stand_in", "classes": len(CLASSES), "fingerprint": made_by}
    return record | {"sha256": sha256_of(dest), "size": dest.stat().st_size} | metrics


def fingerprint(params: Params) -> str:
    """What the stand-in depends on: its settings, the scenes' size, the CNN's shape, the seed and this code."""
    what = {
        "backbone": params.backbone.model_dump(mode="json"),
        "data": [params.data.image_size, params.data.max_objects],
        "model": [params.model.image_size, list(params.model.vision.layers)],
        "seed": params.seed,
    }
    return hashlib.sha256((json.dumps(what, sort_keys=True) + code_digest(CODE)).encode()).hexdigest()
