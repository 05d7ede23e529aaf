"""Exact resume under DDP: two torchrun (gloo) ranks, rank 0 killed with SIGKILL after a checkpoint, resumed, end bitwise where an uninterrupted pair ends."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from soho.train import checkpoint

WORKER = Path(__file__).with_name("resume_worker.py")


def launch(*jobs: tuple[Path, Path, str], ranks: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone`` (its rendezvous on a free loopback port), or one plain process."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    args = [str(part) for job in jobs for part in ("--job", *job)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *launcher, str(WORKER), *args], env=env, capture_output=True, text=True)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # three launches of Python and torch: 20 s to a minute on 2 busy cores
def test_after_a_kill_each_rank_resumes_its_own_rng_and_data_position_and_the_weights_match_bitwise(tmp_path):
    weights = {name: tmp_path / f"{name}.pt" for name in ("straight", "killed", "single", "resumed")}
    killed = launch(
        (tmp_path / "straight", weights["straight"], "-"), (tmp_path / "resumed", weights["killed"], "kill@3")
    )
    assert killed.returncode != 0 and "exitcode: -9" in killed.stderr  # torchrun saw rank 0 SIGKILLed
    assert weights["straight"].exists() and not weights["killed"].exists()
    newest = checkpoint.latest(tmp_path / "resumed")
    assert newest is not None and newest.name == "step-00000002"
    ranks = checkpoint.load_state(newest)["ranks"]
    assert [r["batch_in_epoch"] for r in ranks] == [2, 2]
    assert not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])  # each rank's own (seed + rank)

    shutil.copytree(tmp_path / "resumed", tmp_path / "single")
    single = launch((tmp_path / "single", weights["single"], "-"), ranks=1)
    assert single.returncode != 0
    assert "step-00000002: written by 2 processes, resumed by 1; an exact resume needs" in single.stderr

    ok(launch((tmp_path / "resumed", weights["resumed"], "-")))
    straight, resumed = (torch.load(weights[n], weights_only=True) for n in ("straight", "resumed"))
    assert straight.keys() == resumed.keys()
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
