"""One torchrun process of the DDP resume test: train the noisy regression, or stop after N steps as if killed.

``torchrun --standalone --nproc_per_node=2 tests/distributed/resume_worker.py --job CHECKPOINTS OUT STOP ...``
runs each job in turn (STOP: ``-`` to run to the end, ``N`` to stop after N steps, ``kill@N``
for rank 0 to ``kill -9`` itself once step N is logged), in one process group (a launch costs
seconds); rank 0 writes each job's final weights to its ``OUT``. Without torchrun it runs as
one process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's tests.support and soho

from soho.train.distributed import init_from_env  # noqa: E402
from tests.support.noisy import train_noisy  # noqa: E402


def kill_at(step: int):
    """An ``on_log`` (rank 0 only) that SIGKILLs this process at ``step``: no cleanup, no flush."""

    def on_log(at: int, _values: dict) -> None:
        if at == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return on_log


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", nargs=3, action="append", metavar=("CHECKPOINTS", "OUT", "STOP"), required=True)
    args = parser.parse_args()
    ctx = init_from_env(prefer_cuda=False)
    try:
        for checkpoints, out, stop in args.job:
            kill = kill_at(int(stop.removeprefix("kill@"))) if stop.startswith("kill@") else None
            stop_after = int(stop) if stop.isdigit() else None
            trainer = train_noisy(Path(checkpoints), workers=1, every=2, stop_after=stop_after, ctx=ctx, on_log=kill)
            if ctx.is_main:
                torch.save(trainer.module.state_dict(), out)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
