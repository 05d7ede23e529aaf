"""SCL under two gloo processes: negatives come from both ranks, gradients as the official AllGather_multi."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from soho.objectives import scl

from .test_ddp import free_port

SLICES, DIM = (slice(0, 3), slice(3, 5)), 5  # rank 1 holds a short last batch


def _features() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return torch.randn(5, DIM, generator=generator), torch.randn(5, DIM, generator=generator)


def gather_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        completed, target = _features()
        local = completed[SLICES[rank]].clone().requires_grad_()
        loss, _ = scl.scl_loss(local, target[SLICES[rank]], gather=True)
        loss.backward()
        torch.save({"loss": loss.detach(), "grad": local.grad}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_each_rank_scores_against_every_ranks_batch(tmp_path):
    completed, target = _features()
    whole = completed.clone().requires_grad_()
    expected, _ = scl.scl_loss(whole, target)
    expected.backward()
    out = str(tmp_path / "rank")
    mp.spawn(gather_worker, args=(free_port(), out), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        assert torch.isclose(got["loss"], expected.detach(), atol=1e-6)  # the 5x5 matrix, not the local one
        # this rank's slice of the whole-batch gradient, nothing added from the other rank's loss
        assert torch.allclose(got["grad"], whole.grad[SLICES[rank]], atol=1e-6)
