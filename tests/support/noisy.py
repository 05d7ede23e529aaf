"""A seconds-long training run whose every step draws from every global RNG, for the exact-resume tests.

Why: a resume is exact only if each RNG a step draws from (torch for dropout, masks and
negatives; Python's and NumPy's; a DataLoader worker's for augmentations) is where the
uninterrupted run had it, on every rank. A tiny regression that draws from all of them
shows a mismatch in its weights within a few steps; the SOHO model would take minutes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from soho.config import OptimParams
from soho.train.distributed import DistContext
from soho.train.loop import Trainer

BATCHES_PER_EPOCH = 5


class Noisy(nn.Module):
    """A regression whose forward draws from the global torch (dropout), Python and NumPy RNGs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.3), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, batch):
        scale = 1 + 0.1 * random.random() + 0.1 * float(np.random.random())
        return {"loss": scale * ((self.net(batch["x"]) - batch["y"]) ** 2).mean()}


class Augmented(torch.utils.data.IterableDataset):
    """``BATCHES_PER_EPOCH`` batches an epoch for each rank, each jittered by a draw from a global RNG.

    The draw is made by the process that makes the batch: with workers, the worker, whose RNG
    the DataLoader seeds from the base seed ``iter()`` draws, as a random crop or flip would.
    Rank ``r`` takes every ``world``-th batch from ``r``, and each worker every ``num_workers``-th
    of those, so the epoch's order depends on neither.
    """

    def __init__(self, epoch: int, rank: int = 0, world: int = 1):
        self.epoch, self.rank, self.world = epoch, rank, world

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        generator = torch.Generator().manual_seed(100 + self.epoch)
        for index in range(BATCHES_PER_EPOCH * self.world):
            x = torch.randn(8, 6, generator=generator)
            mine, own = divmod(index, self.world)
            if own == self.rank and mine % workers == worker:
                x = x + 0.1 * torch.randn(8, 6)
                yield {"x": x, "y": x.sum(1, keepdim=True).sin()}


def train_noisy(
    directory: Path | None,
    workers: int,
    every: int,
    stop_after: int | None = None,
    ctx: DistContext = DistContext(),
    steps: int = 8,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> Trainer:
    """``steps`` optimiser steps (or ``stop_after`` of them, as if killed), checkpointing every ``every``."""
    module = Noisy()
    cfg = OptimParams(steps=steps, lr=0.05, cnn_lr=0.05, warmup_steps=0, checkpoint_every=every, log_every=1, clip=0.0)
    groups = {"transformer": list(module.parameters())}
    trainer = Trainer(module, groups, cfg, 3, directory, ctx, on_log=on_log, progress=False)
    trainer.fit(
        lambda epoch: torch.utils.data.DataLoader(
            Augmented(epoch, ctx.rank, ctx.world_size), batch_size=None, num_workers=workers
        ),
        stop_after=stop_after,
    )
    return trainer
