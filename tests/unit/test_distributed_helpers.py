"""The collective helpers of ``soho.train.distributed``, in one process (a one-rank gloo group, or a recorded collective)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from soho.train import distributed
from soho.train.distributed import DistContext, all_gather_rows, mean_across


def test_a_logged_value_made_on_the_cpu_reaches_the_collective_on_the_models_device(monkeypatch):
    """NCCL takes CUDA tensors only; here the model's device is ``meta``, so a CPU tensor would show."""
    seen = []
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda tensor: seen.append(tensor.device))
    ctx = DistContext(rank=0, world_size=2, device=torch.device("meta"))
    mean_across(torch.tensor(3.0), ctx)
    assert seen == [torch.device("meta")]


@pytest.fixture
def one_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_gathering_rows_returns_them_with_their_count(one_rank_group):
    rows = torch.arange(6.0).reshape(3, 2)
    gathered, sizes = all_gather_rows(rows)
    assert torch.equal(gathered, rows) and sizes == [3]
