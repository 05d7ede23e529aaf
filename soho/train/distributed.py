"""torchrun helpers: initialise the process group from the environment, rank checks, reductions, gathers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(prefer_cuda: bool = True) -> DistContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = prefer_cuda and torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistContext(rank, world, local, device)


def world_size() -> int:
    """The process group's size; 1 outside one (one process, or before ``init_process_group``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the group; 0 outside one."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def mean_across(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of ``value`` over the ranks, on ``ctx.device``.

    Why the move: NCCL reduces only CUDA tensors, and a logged scalar may have been made on
    the CPU (a count, a perplexity); gloo takes either, so a CPU-only test would not notice.
    """
    if ctx.enabled:
        value = value.detach().to(ctx.device, copy=True)
        dist.all_reduce(value)
        value /= ctx.world_size
    return value


def all_gather_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Every rank's rows of ``tensor`` in rank order, and each rank's row count; no gradient.

    Why padded: ``all_gather`` needs one shape on every rank, while row counts differ (a short
    last batch, keep-ratio padding cells left out). A collective: every rank calls it at the same point.
    """
    rows = torch.tensor([len(tensor)], device=tensor.device)
    counts = [torch.zeros_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, rows)
    sizes = [int(c) for c in counts]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))  # (max rows, ...)
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)]), sizes


def gather_to_main(value: Any, ctx: DistContext) -> list[Any] | None:
    """Every rank's ``value`` (picklable), in rank order, on rank 0; ``None`` on the others.

    Every rank must call it at the same point (it is a collective).
    """
    if not ctx.enabled:
        return [value]
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def all_gather_lists(values: list, ctx: DistContext) -> list:
    """Every rank's list (picklable items) joined in rank order, on every rank: a collective.

    Why every rank: evaluation sharded across ranks gives each the whole split's predictions,
    so any rank's report is the report (rank 0 writes it).
    """
    if not ctx.enabled:
        return list(values)
    gathered: list[list] = [[] for _ in range(ctx.world_size)]
    dist.all_gather_object(gathered, values)
    return [item for part in gathered for item in part]


def sum_across(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over the ranks (on ``ctx.device`` for the collective), on the CPU."""
    if not ctx.enabled:
        return tensor
    moved = tensor.to(ctx.device)
    dist.all_reduce(moved)
    return moved.cpu()


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics, the Visual Dictionary), in place.

    Why: DDP keeps the weights equal, but each rank's last forward updated its own BatchNorm
    running statistics; evaluation shared by the ranks must score one model. A collective.
    """
    if ctx.enabled:
        for buffer in module.buffers():
            moved = buffer.data.to(ctx.device)
            dist.broadcast(moved, src=0)
            buffer.data.copy_(moved)


class _GatherWithLocalGradient(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the incoming gradient, nothing summed.

    Hand-written because it is the gradient the official SCL trains with (``AllGather_multi``,
    IIGROUP/SCL): ``torch.distributed.nn.functional.all_gather`` would also add the other
    ranks' gradients of their losses, a different training signal.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        gathered, sizes = all_gather_rows(tensor.detach())  # the last batch may be short on some ranks
        rank = dist.get_rank()
        ctx.start, ctx.stop = sum(sizes[:rank]), sum(sizes[: rank + 1])
        return gathered

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad[ctx.start : ctx.stop]


def gather_batch(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, in rank order (batch sizes may differ); the tensor itself outside a process group.

    A collective: every rank must call it at the same point, so only the training forward does.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherWithLocalGradient.apply(tensor)
