"""The shared training loop under DDP: two gloo processes reach the weights of one process."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from soho.config import OptimParams
from soho.train.distributed import DistContext
from soho.train.loop import Trainer


class Regression(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, batch):
        return {"loss": ((self.net(batch["x"]) - batch["y"]) ** 2).mean()}


def global_batches(rank: int, world: int):
    def batches(epoch):
        generator = torch.Generator().manual_seed(100 + epoch)
        for _ in range(4):
            x = torch.randn(8, 6, generator=generator)
            y = x.sum(1, keepdim=True).sin()
            part = slice(rank * 8 // world, (rank + 1) * 8 // world)
            yield {"x": x[part], "y": y[part]}

    return batches


CFG = OptimParams(steps=6, lr=0.05, cnn_lr=0.05, warmup_steps=0, checkpoint_every=100, log_every=1, clip=0.0)


def ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = Regression()
        trainer = Trainer(
            model, {"transformer": list(model.parameters())}, CFG, 0, None, DistContext(rank, world), progress=False
        )
        trainer.fit(global_batches(rank, world))
        if rank == 0:
            torch.save(model.state_dict(), out)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    single = Regression()
    Trainer(single, {"transformer": list(single.parameters())}, CFG, 0, None, progress=False).fit(global_batches(0, 1))
    out = tmp_path / "ddp.pt"
    mp.spawn(ddp_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    untrained = Regression().state_dict()
    for key, value in single.state_dict().items():
        assert not torch.allclose(value, untrained[key])  # it did train
        assert torch.allclose(value, ddp[f"{key}"], atol=1e-5), key
