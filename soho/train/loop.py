"""The training loop shared by pre-training and fine-tuning.

AdamW with per-group learning rates (CNN vs Transformer; or SGD for the CNN, as SOHO),
linear warm-up then linear or step decay, gradient accumulation and clipping, bf16 autocast on GPU, torchrun DDP,
seeded determinism, atomic checkpoints every N steps and exact resume: the
checkpoint stores, for each rank, its data position (epoch, batches consumed) and
every RNG (torch, CUDA, Python, NumPy), now and at its epoch's start; the data order
is a pure function of (seed, epoch), so a resumed run reaches bitwise the weights of
an uninterrupted one, with DataLoader workers and under DDP.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from soho.config import OptimParams
from soho.overrides import ConfigError
from soho.train import checkpoint
from soho.train.distributed import DistContext, gather_to_main, mean_across

log = logging.getLogger(__name__)


def use_deterministic_kernels() -> None:
    """Ask torch for its deterministic kernels, in every process that trains (a fresh or a resumed one).

    Why: on a 2-core Xeon with AMX, two embedded pre-trainings of one seed ended 0.64 and 0.79 in
    held-out ITM: with two threads some CPU kernels reduce in a varying order.
    ``use_deterministic_algorithms`` made them identical at no measured cost (30 steps, 21.0 s
    either way). ``warn_only``: an op with no deterministic kernel (a few on CUDA) warns instead
    of stopping a paper-profile run.
    """
    torch.use_deterministic_algorithms(True, warn_only=True)


def seed_everything(seed: int) -> None:
    """Seed every global RNG a checkpoint restores (NumPy's is unused by the pipelines today), and ask
    torch for its deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    use_deterministic_kernels()


def build_optimizer(groups: dict[str, list[nn.Parameter]], cfg: OptimParams) -> torch.optim.Optimizer:
    """AdamW; the CNN gets ``cnn_lr``; biases and norms get no weight decay.

    Fused (one kernel over all parameters, CPU and CUDA): the per-tensor loop of the
    default CPU implementation cost a fifth of an embedded fine-tuning step. With
    ``cnn_optimizer: sgd`` the CNN takes SGD with momentum instead (SOHO's AdamwSGD).
    """
    param_groups = []
    for name, params in groups.items():
        if name == "cnn" and cfg.cnn_optimizer == "sgd":
            continue
        lr = cfg.cnn_lr if name == "cnn" else cfg.lr
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        param_groups += [
            {"params": decay, "lr": lr, "weight_decay": cfg.weight_decay, "name": f"{name}"},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}_no_decay"},
        ]
    adamw = torch.optim.AdamW([g for g in param_groups if g["params"]], fused=True)
    if cfg.cnn_optimizer != "sgd" or not groups.get("cnn"):
        return adamw
    # SOHO: weight decay on every CNN parameter, norms and biases included
    cnn = {"params": groups["cnn"], "lr": cfg.cnn_lr, "weight_decay": cfg.cnn_weight_decay, "name": "cnn"}
    sgd = torch.optim.SGD([cnn], lr=cfg.cnn_lr, momentum=cfg.cnn_momentum)
    return PerGroupOptimizer([sgd, adamw])


class PerGroupOptimizer(torch.optim.Optimizer):
    """Several torch optimisers stepped as one, so one scheduler and one checkpoint serve them all.

    Why: SOHO trains the CNN with SGD and the Transformer with AdamW; torch has no optimiser
    that picks its update rule per group. The parameter groups are the inner optimisers' own
    dicts, so a scheduler's lr changes reach them; the updates are torch's SGD and AdamW.
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers
        super().__init__([g for o in optimizers for g in o.param_groups], {})

    def add_param_group(self, param_group: dict) -> None:
        self.param_groups.append(param_group)  # the inner optimiser already checked and completed it

    @torch.no_grad()
    def step(self, closure=None):
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"], strict=True):
            optimizer.load_state_dict(state)


def warmup_linear(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def warmup_step(warmup: int, total: int, decay_at: tuple[float, ...], decay: float) -> Callable[[int], float]:
    """Linear warm-up, then the full rate times ``decay`` once per passed boundary ``decay_at`` (fractions of ``total``).

    SOHO's step policy: x0.1 at epochs 25 and 35 of 40, i.e. at 62.5% and 87.5% of the steps.
    """
    boundaries = [round(f * total) for f in decay_at]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return decay ** sum(step >= b for b in boundaries)

    return factor


def lr_factor(cfg: OptimParams) -> Callable[[int], float]:
    if cfg.schedule == "step":
        return warmup_step(cfg.warmup_steps, cfg.steps, cfg.decay_at, cfg.decay_factor)
    return warmup_linear(cfg.warmup_steps, cfg.steps)


def accumulation(cfg: OptimParams, world_size: int) -> int:
    """Micro-batches per optimiser step: ``grad_accum``, or what ``global_batch`` needs on ``world_size`` processes."""
    if cfg.global_batch is None:
        return cfg.grad_accum
    per_step = cfg.batch_size * world_size
    if cfg.global_batch % per_step:
        raise ConfigError(
            f"optim.global_batch: {cfg.global_batch} is not a multiple of batch_size x processes "
            f"({cfg.batch_size} x {world_size} = {per_step}); change batch_size or the process count"
        )
    return cfg.global_batch // per_step


class Trainer:
    """Runs ``module(batch) -> {"loss": ..., metrics...}`` for ``cfg.steps`` optimiser steps.

    ``cfg`` is a schedule of ``params.yaml`` (``pretrain.optim``, ``finetune.optim``); the
    loader settings in it (batch size, workers, shuffle buffer) are the caller's business.
    """

    def __init__(
        self,
        module: nn.Module,
        groups: dict[str, list[nn.Parameter]],
        cfg: OptimParams,
        seed: int,
        checkpoint_dir: Path | None,
        ctx: DistContext = DistContext(),
        on_log: Callable[[int, dict[str, float]], None] | None = None,
        progress: bool = True,
        keep_checkpoints: int = 2,
    ):
        self.cfg, self.seed, self.ctx, self.on_log, self.progress = cfg, seed, ctx, on_log, progress
        self.keep_checkpoints = keep_checkpoints
        self.module = module.to(ctx.device)
        self.model = self._distributed(self.module) if ctx.enabled else self.module
        self.grad_accum = accumulation(cfg, ctx.world_size)
        self.optimizer = build_optimizer(groups, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(cfg))
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self._epoch_rng: dict | None = None  # the RNG states as this epoch's iterator was made
        self._rng_on_resume: dict | None = None  # restored once the resumed epoch's iterator exists

    def _distributed(self, module: nn.Module) -> DistributedDataParallel:
        """DDP that tolerates parameters a step leaves unused.

        Why: one model serves every objective and task, so each run leaves some of it idle
        (the ITC projections with ITC off, the MVM and MLM heads in fine-tuning, the ITM head in
        VQA). Without ``find_unused_parameters`` DDP waits for their gradients and the next step
        fails; the cost is one walk of the autograd graph per step.
        """
        device_ids = [self.ctx.device] if self.ctx.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)

    def _autocast(self):
        if self.cfg.amp and self.ctx.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def position(self) -> dict:
        """This rank's own place: its RNG states (now, and at its epoch's start) and its data position."""
        return {
            "rng": checkpoint.rng_state(),
            "epoch_rng": self._epoch_rng,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
        }

    def save(self) -> None:
        """Checkpoint this step; under DDP every rank calls it, and rank 0 writes every rank's position."""
        if self.checkpoint_dir is None:
            return
        ranks = gather_to_main(self.position(), self.ctx)
        if self.ctx.is_main:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "ranks": ranks,
            }
            checkpoint.save(self.checkpoint_dir, self.step, self.module, state, self.keep_checkpoints)

    def resume(self) -> bool:
        """Continue from the newest checkpoint in ``checkpoint_dir``, if any, at this rank's own position."""
        found = checkpoint.latest(self.checkpoint_dir) if self.checkpoint_dir else None
        if found is None:
            return False
        state = checkpoint.load_state(found)
        ranks = state.get("ranks")
        if ranks is None or len(ranks) != self.ctx.world_size:
            written = "without per-rank states (an older version)" if ranks is None else f"by {len(ranks)} processes"
            raise checkpoint.CheckpointError(
                f"{found}: written {written}, resumed by {self.ctx.world_size}; an exact resume needs "
                f"the same number of processes (or delete {self.checkpoint_dir} to start over)"
            )
        checkpoint.load_weights(self.module, found)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        own = ranks[self.ctx.rank]
        self._rng_on_resume, self._epoch_rng = own["rng"], own["epoch_rng"]
        self.step, self.epoch, self.batch_in_epoch = state["step"], own["epoch"], own["batch_in_epoch"]
        log.info("resumed from %s (step %d, epoch %d, batch %d)", found, self.step, self.epoch, self.batch_in_epoch)
        return True

    def _epoch_iterator(self, batches: Callable[[int], Iterable[dict]]) -> Iterator[dict]:
        """The current epoch's batches, past those a resumed run already consumed.

        Why the RNG dance: ``iter(DataLoader)`` draws the base seed of the workers' RNGs from
        the global RNG, which the masks and negatives use too. A resumed run makes the epoch's
        iterator from the RNG states the interrupted run had at that point (so its workers
        draw the same augmentations), skips the consumed batches, then takes the states of
        the checkpoint (so every later mask and negative is the same).
        """
        if self._rng_on_resume is None:
            self._epoch_rng = checkpoint.rng_state()
        else:
            checkpoint.set_rng_state(self._epoch_rng)
        iterator = iter(batches(self.epoch))
        for _ in range(self.batch_in_epoch):
            next(iterator, None)
        if self._rng_on_resume is not None:
            checkpoint.set_rng_state(self._rng_on_resume)
            self._rng_on_resume = None
        return iterator

    def _log(self, out: dict[str, torch.Tensor], samples_per_s: float, bar) -> dict[str, float]:
        """The step's scalar outputs (averaged over ranks), throughput and lr, to the bar and ``on_log``."""
        last = {k: float(mean_across(v.detach().float().mean(), self.ctx)) for k, v in out.items() if v.dim() == 0}
        last["samples_per_s"] = samples_per_s
        last["lr"] = self.scheduler.get_last_lr()[-1]
        bar.set_postfix(loss=f"{last['loss']:.3f}", sps=f"{last['samples_per_s']:.1f}")
        if self.on_log and self.ctx.is_main:
            self.on_log(self.step, last)
        return last

    def fit(self, batches: Callable[[int], Iterable[dict]], stop_after: int | None = None) -> dict[str, float]:
        """Train until ``cfg.steps`` (or ``stop_after`` steps in this call, to simulate a kill)."""
        cfg = self.cfg
        use_deterministic_kernels()  # a resumed run in a new process seeds nothing, but needs them too
        if not self.resume():
            seed_everything(self.seed + self.ctx.rank)
        self.model.train()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (self.progress and self.ctx.is_main), desc="train")
        last: dict[str, float] = {}
        window_samples, window_start = 0, time.perf_counter()
        micro, started = 0, self.step
        while self.step < cfg.steps:
            iterator = self._epoch_iterator(batches)
            exhausted, empty = True, self.batch_in_epoch == 0  # a resumed epoch may have nothing left
            for batch in iterator:
                empty = False
                batch = {k: v.to(self.ctx.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                micro += 1
                self.batch_in_epoch += 1
                boundary = micro % self.grad_accum == 0
                sync = contextlib.nullcontext() if boundary or not self.ctx.enabled else self.model.no_sync()
                with sync, self._autocast():
                    out = self.model(batch)
                    (out["loss"] / self.grad_accum).backward()
                window_samples += len(next(v for v in batch.values() if torch.is_tensor(v))) * self.ctx.world_size
                if not boundary:
                    continue
                if cfg.clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.module.parameters(), cfg.clip)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    last = self._log(out, window_samples / max(time.perf_counter() - window_start, 1e-9), bar)
                    window_samples, window_start = 0, time.perf_counter()
                if cfg.checkpoint_every and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                    self.save()
                if self.step >= cfg.steps or (stop_after is not None and self.step - started >= stop_after):
                    exhausted = False
                    break
            if stop_after is not None and self.step - started >= stop_after:
                break
            if exhausted and empty:
                raise ValueError(
                    f"rank {self.ctx.rank}: epoch {self.epoch} gave no batch at step {self.step}; a split needs at "
                    "least one shard per process and DataLoader worker (fewer workers, or smaller shards)"
                )
            if exhausted:
                self.epoch += 1
                self.batch_in_epoch = 0
        bar.close()
        return last
