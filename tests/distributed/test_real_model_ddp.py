"""The real SOHO under torchrun (two gloo ranks): pre-training, SOHO + SCL, every fine-tuning task.

One torchrun launch runs every job (``real_model_worker.py``); one plain process repeats the
comparison runs. Shards of two samples give the ranks different shard counts, so their
batches differ in size within a step and their epochs end at different steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from soho.data import shards
from soho.data.catalog import DATASETS
from soho.tasks import TASKS

from ..conftest import scratch_folder

pytestmark = pytest.mark.slow  # two launches of Python and torch, ~20 short trainings of the tiny SOHO
WORKER = Path(__file__).with_name("real_model_worker.py")
COMPARED = ("vqa", "nlvr2", "snli_ve")
PRETRAIN_FITS = 2  # fits 1-2: SOHO, SOHO + SCL; then one per task


def launch(shards_root: Path, out: Path, ranks: int) -> None:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    extra = [] if ranks > 1 else ["--compare-only"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(
        [sys.executable, *launcher, str(WORKER), str(shards_root), str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a collective that waits for a rank that never comes is a failure, not a hang
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]


@pytest.fixture(scope="module")
def runs(tiny_raw, tmp_path_factory, request) -> Iterator[Path]:
    with scratch_folder(request, tmp_path_factory, "ddp-real") as root:
        small = root / "shards"
        shards.write_all(DATASETS, tiny_raw, small, 2, 0.0)  # two samples per shard: several shards per split
        launch(small, root / "ddp", ranks=2)
        launch(small, root / "single", ranks=1)
        yield root


def report(runs: Path, rank: int) -> dict:
    return json.loads((runs / "ddp" / f"report-rank{rank}.json").read_text())


def synchronised(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What DDP keeps equal on every rank: the weights and the Visual Dictionary (BatchNorm statistics are per rank)."""
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches_tracked" not in k}


def test_ranks_train_on_uneven_batches_and_end_with_the_same_weights_and_dictionary(runs):
    first, second = report(runs, 0), report(runs, 1)
    fits = len(first["batch_sizes"])
    assert fits == PRETRAIN_FITS + 6 == len(second["batch_sizes"])  # pre-training twice, then every task
    soho0, soho1 = first["batch_sizes"][0], second["batch_sizes"][0]
    assert soho0 != soho1 and min(soho0 + soho1) < 4  # short batches, of different sizes in one step
    for n in range(1, fits + 1):
        a, b = (synchronised(torch.load(runs / "ddp" / f"fit{n}-rank{r}.pt", weights_only=True)) for r in (0, 1))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (n, key)


def test_the_dictionary_reseeds_from_every_ranks_features(runs):
    first, second = report(runs, 0), report(runs, 1)
    assert first["reseeds"] > 0 and first["reseeds"] == second["reseeds"]
    assert first["local_rows"] != second["local_rows"]  # the ranks hold different counts of features
    assert first["gathered_rows"] == second["gathered_rows"]  # and seed from the same, every rank's
    local = [a + b for a, b in zip(first["local_rows"], second["local_rows"], strict=True)]
    assert first["gathered_rows"] == local


def test_held_out_and_evaluation_readers_see_the_whole_split_under_torchrun(runs):
    main = report(runs, 0)
    total = main["index_total"]
    assert main["pretrain_soho"]["heldout_pairs"] == total == main["pretrain_scl"]["heldout_pairs"]
    assert main["eval_batches"]["coco/val"] == total
    assert main["eval_batches"]["coco/val@ranks"] < total  # a training reader takes this rank's shards only


def held_out(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key.startswith("heldout_")}


@pytest.mark.parametrize("variant", ["soho", "scl"])
def test_held_out_evaluation_is_shared_by_the_ranks_and_equals_one_process(runs, variant):
    """Each rank scores every other held-out batch; the gathered metrics are one process's, bit for bit.

    At training's batch of 4 the 4 held-out pairs are one batch (rank 1 scores none); at a batch of 2 each rank
    scores one, so the gathered sums and the summed Visual Dictionary counts are checked too.
    """
    first, second = report(runs, 0), report(runs, 1)
    in_training = held_out(first[f"pretrain_{variant}"])
    assert {"heldout_mlm_acc", "heldout_itm_acc", "heldout_vd_perplexity", "heldout_pairs"} <= in_training.keys()
    assert in_training["heldout_pairs"] == first["index_total"] == 4  # the whole held-out split (coco val)
    assert in_training == held_out(second[f"pretrain_{variant}"]) == first[f"heldout_alone_{variant}"]
    shared = first[f"heldout_sharded_{variant}"]
    assert shared["heldout_pairs"] == first["index_total"]
    assert shared == second[f"heldout_sharded_{variant}"] == first[f"heldout_alone_small_{variant}"]


def test_scl_pretraining_contrasts_every_ranks_embeddings_as_the_official_code(runs):
    """SCL's compute_con gathers image and text embeddings from every rank (AllGather_multi) before ITC."""
    first, second = report(runs, 0), report(runs, 1)
    scl0, scl1 = first["batch_sizes"][1], second["batch_sizes"][1]  # fit 2: SOHO + SCL (ITC on)
    steps = len(scl0)  # later entries: retrieval fine-tuning, whose ITC stays within the rank's batch
    assert first["itc_rows"][:steps] == second["itc_rows"][:steps] == [a + b for a, b in zip(scl0, scl1, strict=True)]
    assert scl0 != scl1  # the ranks' batches differed in size: the gather took both


def test_downstream_evaluation_is_shared_by_the_ranks_and_covers_the_whole_split(runs):
    """Each rank scores its shards (retrieval: its ITM pairs) and the parts are gathered: every rank reports
    on every example once, as one process does.

    Not bitwise: the ranks batch other examples together than one process, so a near-tie can
    flip an argmax; a lost or doubled shard shows in the row count.
    """
    main, other = report(runs, 0), report(runs, 1)
    assert set(main["eval_sharded"]) == set(TASKS)
    assert main["eval_sharded"] == other["eval_sharded"]  # every rank returns the whole split's report
    for task, variants in main["eval_alone"].items():
        for split, (alone, rows) in variants["pretrained"].items():
            sharded, sharded_rows = main["eval_sharded"][task]["pretrained"][split]
            assert sharded_rows == rows > 0, (task, split)
            assert sharded.keys() == alone.keys(), (task, split)
            for metric, value in alone.items():
                assert sharded[metric] == pytest.approx(value, abs=5.0), (task, split, metric)


@pytest.mark.parametrize("task", COMPARED)
def test_two_ranks_reach_the_weights_of_one_process_with_the_same_global_batch(runs, task):
    ddp = torch.load(runs / "ddp" / f"compare-{task}-world2.pt", weights_only=True)
    single = torch.load(runs / "single" / f"compare-{task}-world1.pt", weights_only=True)
    start = torch.load(runs / "single" / f"compare-{task}-world1-start.pt", weights_only=True)
    moved = [key for key, value in single.items() if value.is_floating_point() and not torch.equal(value, start[key])]
    assert any(key.startswith("head.") for key in moved) and any(key.startswith("model.fusion.") for key in moved)
    for key, value in synchronised(single).items():
        assert torch.allclose(value, ddp[key], rtol=1e-4, atol=1e-5), key
