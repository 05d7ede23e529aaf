"""Exact resume of what the stages run: pre-training (and so each `ablate` row) and fine-tuning.

Each is killed mid-run (an exception from its step logger, after the step-2 checkpoint)
and run again, through the real shard pipeline and a DataLoader with two workers; the
final weights must be bitwise those of an uninterrupted run.
"""

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from soho.config import load_params, with_overrides
from soho.data import shards as shard_io
from soho.data.embedded import datasets
from soho.tasks.run import finetune, variant_dir
from soho.train import checkpoint, pretrain
from soho.train.distributed import DistContext

from ..conftest import REPO, tiny_data

pytestmark = pytest.mark.slow  # six short trainings of the tiny SOHO: about a minute on 2 cores
SCHEDULE = {"steps": 5, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1, "num_workers": 2}


class Killed(Exception):
    """Stands for a kill: the run stops between steps, leaving its checkpoints behind."""


def kill_after(step: int):
    def on_log(at: int, _values: dict) -> None:
        if at == step:
            raise Killed(f"killed after step {at}")

    return on_log


def tiny_params(tmp_path, shards, run: str):
    tiny = {
        "paths.shards": str(shards),
        "paths.checkpoints": str(tmp_path / run / "checkpoints"),
        "paths.results": str(tmp_path / run / "results"),
        "model.image_size": 64,
        "model.text.num_layers": 1,
        "model.vd.size": 8,
        "pretrain.eval_samples": 4,
        "pretrain.optim": {**SCHEDULE, "shuffle_buffer": 8},
        "finetune.optim": {**SCHEDULE, "shuffle_buffer": 8},
    }
    return with_overrides(load_params(REPO / "params.yaml"), tiny, source="test")


def assert_same_tensors(first: Path, second: Path) -> None:
    """Bitwise per tensor. Why not the files' bytes: safetensors writes its header's metadata (the
    tied weights' names) in a per-process random order, so equal weights can differ in bytes."""
    a, b = load_file(first), load_file(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def without_throughput(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "samples_per_s" not in k}


def test_a_killed_pretraining_resumes_to_bitwise_the_uninterrupted_weights_and_metrics(tmp_path, tiny_shards):
    straight_params, resumed_params = (tiny_params(tmp_path, tiny_shards, run) for run in ("straight", "resumed"))
    straight = pretrain.run(straight_params, DistContext(), progress=False)
    with pytest.raises(Killed):
        pretrain.run(resumed_params, DistContext(), on_log=kill_after(3), progress=False)
    train_dir = pretrain.variant_dir(resumed_params, "soho") / "train"
    assert checkpoint.latest(train_dir).name == "step-00000002"
    resumed = pretrain.run(resumed_params, DistContext(), progress=False)
    assert without_throughput(resumed) == without_throughput(straight)
    weights = [pretrain.variant_dir(p, "soho") / "model.safetensors" for p in (straight_params, resumed_params)]
    assert_same_tensors(*weights)


def test_a_killed_fine_tuning_resumes_to_bitwise_the_uninterrupted_weights(tmp_path, tiny_shards):
    straight_params, resumed_params = (tiny_params(tmp_path, tiny_shards, run) for run in ("straight", "resumed"))
    finetune(straight_params, "snli_ve", "scratch", DistContext(), progress=False)
    with pytest.raises(Killed):
        finetune(resumed_params, "snli_ve", "scratch", DistContext(), on_log=kill_after(3), progress=False)
    folder = variant_dir(resumed_params, "snli_ve", "scratch")
    assert checkpoint.latest(folder / "train").name == "step-00000002"
    finetune(resumed_params, "snli_ve", "scratch", DistContext(), progress=False)
    weights = [variant_dir(p, "snli_ve", "scratch") / "model.safetensors" for p in (straight_params, resumed_params)]
    assert_same_tensors(*weights)


def test_a_finished_fine_tuning_is_kept_and_trained_again_when_its_shards_change(tmp_path, tiny_raw):
    """The stage keeps a finished variant; re-generated data with the same counts must not be handed the old one."""
    shards = tmp_path / "shards"
    shard_io.write_all(["snli_ve"], tiny_raw, shards, 5, 0.0)
    params = tiny_params(tmp_path, shards, "run")
    assert finetune(params, "snli_ve", "scratch", DistContext(), progress=False)  # trained: its last metrics
    assert finetune(params, "snli_ve", "scratch", DistContext(), progress=False) == {}  # finished: kept
    other = datasets.generate(tmp_path / "other" / "raw", tiny_data(), seed=1)  # same sizes, other scenes
    shutil.rmtree(shards)
    shard_io.write_all(["snli_ve"], other, shards, 5, 0.0)
    assert finetune(params, "snli_ve", "scratch", DistContext(), progress=False)  # other shards: trained again
