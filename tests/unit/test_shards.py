import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from soho.data import shards
from soho.data.catalog import DATASETS


def copy_raw(tiny_raw, tmp_path):
    return shutil.copytree(tiny_raw, tmp_path / "raw")


def test_shards_keep_original_ids_and_counts(tiny_raw, tmp_path):
    summary = shards.write_all(DATASETS, tiny_raw, tmp_path / "shards", 5, 0.0)
    assert summary["datasets"]["coco"]["train"] == {"samples": 12, "bad": 0, "bad_fraction": 0.0}
    assert summary["total"]["bad"] == 0
    urls = shards.shard_urls(tmp_path / "shards", "coco", "train")
    assert [u.rsplit("/", 1)[1] for u in urls] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    with tarfile.open(urls[0]) as tar:
        names = tar.getnames()
    assert "COCO_train2014_000000000001.jpg" in names and "COCO_train2014_000000000001.json" in names
    with tarfile.open(shards.shard_urls(tmp_path / "shards", "nlvr2", "dev")[0]) as tar:
        assert "dev-0-0-0.img0.png" in tar.getnames() and "dev-0-0-0.img1.png" in tar.getnames()
    assert json.loads((tmp_path / "shards" / "stats.json").read_text()) == summary


def test_shards_are_reproducible(tiny_raw, tmp_path):
    for name in ("a", "b"):
        shards.write_all(["coco"], tiny_raw, tmp_path / name, 5, 0.0)
    assert (tmp_path / "a/coco/train-000000.tar").read_bytes() == (tmp_path / "b/coco/train-000000.tar").read_bytes()


def test_corrupt_and_missing_images_are_skipped_and_counted(tiny_raw, tmp_path):
    raw = copy_raw(tiny_raw, tmp_path)
    images = sorted((raw / "coco" / "train2014").glob("*.jpg"))
    images[0].write_bytes(images[0].read_bytes()[:100])  # truncated JPEG
    images[1].unlink()
    summary = shards.write_all(["coco"], raw, tmp_path / "shards", 50, 0.5)
    assert summary["datasets"]["coco"]["train"] == {"samples": 10, "bad": 2, "bad_fraction": round(2 / 12, 6)}
    bad = json.loads((tmp_path / "shards" / "coco" / "index.json").read_text())["train"]["bad"]
    assert {b["key"] for b in bad} == {images[0].stem, images[1].stem}


def test_too_many_bad_samples_fail_and_keep_previous_shards(tiny_raw, tmp_path):
    raw = copy_raw(tiny_raw, tmp_path)
    shards.write_all(["coco"], raw, tmp_path / "shards", 50, 0.0)
    before = (tmp_path / "shards" / "coco" / "train-000000.tar").read_bytes()
    next(iter((raw / "coco" / "train2014").glob("*.jpg"))).write_bytes(b"not an image")
    with pytest.raises(shards.ShardError, match=r"coco/train: 1 of 12 samples are bad .*max_bad_fraction=0\.00%"):
        shards.write_all(["coco"], raw, tmp_path / "shards", 50, 0.0)
    assert (tmp_path / "shards" / "coco" / "train-000000.tar").read_bytes() == before


def test_missing_shards_are_named(tmp_path):
    with pytest.raises(shards.ShardError, match=r"coco/index\.json: missing"):
        shards.shard_urls(tmp_path, "coco", "train")


def collate(samples):
    return {"key": [s["key"] for s in samples], "pixels": torch.stack([s["pixels"] for s in samples])}


def to_tensor(sample):
    import numpy as np

    image = np.asarray(sample["jpg"].resize((32, 32)), dtype="float32")
    return {"key": sample["__key__"], "pixels": torch.from_numpy(image)}


def test_pipeline_batches_and_splits_by_worker(tiny_raw, tmp_path):
    shards.write_all(["coco"], tiny_raw, tmp_path / "shards", 4, 0.0)
    urls = shards.shard_urls(tmp_path / "shards", "coco", "train")
    dataset = shards.pipeline(urls, to_tensor, batch_size=5, collate=collate)
    batches = list(dataset)
    assert [len(b["key"]) for b in batches] == [5, 5, 2] and batches[0]["pixels"].shape == (5, 32, 32, 3)
    loader = torch.utils.data.DataLoader(shards.pipeline(urls, to_tensor, 2, collate), batch_size=None, num_workers=2)
    keys = [k for b in loader for k in b["key"]]
    assert sorted(keys) == sorted(k for b in batches for k in b["key"])  # every sample once over 2 workers
    shuffled = [k for b in shards.pipeline(urls, to_tensor, 4, collate, shuffle=8, seed=1) for k in b["key"]]
    again = [k for b in shards.pipeline(urls, to_tensor, 4, collate, shuffle=8, seed=1) for k in b["key"]]
    assert shuffled == again and sorted(shuffled) == sorted(keys) and shuffled != keys


# Issue 15: damaged shards, and keys that do not survive WebDataset.


def members_by_sample(path):
    """[(key, header offset of its first member)] in the tar's order."""
    with tarfile.open(path) as tar:
        starts = {}
        for member in tar.getmembers():
            starts.setdefault(member.name.split(".", 1)[0], member.offset)
    return list(starts.items())


def cut_after(path, samples: int, zeros: bool = False) -> None:
    """Cut a shard at the member boundary after ``samples`` samples (or zero everything after it, same size)."""
    data = path.read_bytes()
    offset = members_by_sample(path)[samples][1]
    path.write_bytes(data[:offset] + (bytes(len(data) - offset) if zeros else b""))


def read_keys(urls, workers: int = 0):
    dataset = shards.pipeline(urls, to_tensor, 2, collate)
    if workers:
        dataset = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
    return [k for b in dataset for k in b["key"]]


@pytest.fixture
def copied(tiny_shards, tmp_path):
    """A writable copy of the tiny shards (coco: train 5+5+2 samples, val 4, test 4)."""
    return shutil.copytree(tiny_shards, tmp_path / "shards")


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda p: p.write_bytes(b"this is not a tar file\n" * 50), r"val-000000\.tar: unreadable shard"),
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2 + 7]), r"val-000000\.tar: cut short"),
        (lambda p: p.write_bytes(b""), r"val-000000\.tar: unreadable shard"),
        (lambda p: p.unlink(), r"val-000000\.tar: unreadable shard \(FileNotFoundError"),
        (lambda p: cut_after(p, 2), r"val-000000\.tar: cut short"),
        (lambda p: cut_after(p, 2, zeros=True), r"val-000000\.tar: holds 2 samples, .*index\.json counts 4 in 'val'"),
        (lambda p: cut_after(p, 0, zeros=True), r"val-000000\.tar: holds 0 samples"),
    ],
    ids=["garbage", "truncated", "empty", "missing", "member-boundary", "zero-tail", "all-zeros"],
)
def test_a_damaged_shard_is_one_error_naming_it(copied, damage, expected):
    urls = shards.shard_urls(copied, "coco", "val")
    assert len(read_keys(urls)) == 4
    damage(copied / "coco" / "val-000000.tar")
    with pytest.raises(shards.ShardError, match=expected) as err:
        read_keys(urls)
    one_line(err)


@pytest.mark.parametrize(("shard", "keep"), [(0, 3), (1, 4), (2, 1)])
def test_a_short_shard_of_a_split_is_named(copied, shard, keep):
    urls = shards.shard_urls(copied, "coco", "train")
    cut_after(copied / "coco" / f"train-{shard:06d}.tar", keep, zeros=True)  # passes the tail check
    with pytest.raises(shards.ShardError, match=rf"train-{shard:06d}\.tar: holds {keep} samples") as err:
        read_keys(urls)
    one_line(err)


def test_a_short_shard_read_by_a_dataloader_worker_is_one_line_naming_it(tiny_shards, copied):
    urls = shards.shard_urls(copied, "coco", "train")
    assert sorted(read_keys(urls, workers=2)) == sorted(read_keys(urls))
    cut_after(copied / "coco" / "train-000001.tar", 3, zeros=True)  # worker 1 reads this shard alone
    with pytest.raises(
        shards.ShardError, match=r"train-000001\.tar: holds 3 samples.*\(DataLoader worker process 1\)$"
    ):
        read_keys(urls, workers=2)
    shutil.copy(tiny_shards / "coco" / "train-000001.tar", copied / "coco")  # intact again
    cut_after(copied / "coco" / "train-000000.tar", 4, zeros=True)  # worker 0 reads it and the last shard
    with pytest.raises(shards.ShardError, match=r"train-000002\.tar: holds 2 samples, where 4 are left") as err:
        read_keys(urls, workers=2)
    assert "unless train-000000.tar (holding 4) is the short one" in one_line(err)
    val = shards.shard_urls(copied, "coco", "val")
    (copied / "coco" / "val-000000.tar").write_bytes(b"garbage" * 1024)  # after listing: found as it is read
    with pytest.raises(shards.ShardError, match=r"val-000000\.tar: unreadable shard") as err:
        read_keys(val, workers=2)
    one_line(err)


def test_listing_a_split_checks_its_shards_exist_and_end_as_tars(copied):
    from soho.tasks import vqa

    assert vqa.questions_of(copied, "val2014") and vqa.answer_vocabulary(copied, 5)
    (copied / "vqa" / "train2014-000000.tar").write_bytes(b"garbage" * 100)
    with pytest.raises(shards.ShardError, match=r"train2014-000000\.tar: cut short or overwritten \(700 bytes"):
        vqa.answer_vocabulary(copied, 5)  # reads the shards itself, after listing them
    cut_after(copied / "vqa" / "val2014-000000.tar", 1)
    with pytest.raises(shards.ShardError, match=r"val2014-000000\.tar: cut short or overwritten"):
        vqa.questions_of(copied, "val2014")
    (copied / "coco" / "val-000000.tar").unlink()
    with pytest.raises(shards.ShardError, match=r"val-000000\.tar: missing, though its index\.json lists it"):
        shards.shard_urls(copied, "coco", "val")


def test_the_vqa_readers_check_every_shard_count_too(copied):
    """answer_vocabulary and questions_of read the shards themselves: a short one is one line naming it."""
    from soho.tasks import vqa

    cut_after(copied / "vqa" / "train2014-000000.tar", 2, zeros=True)  # passes the tail check
    with pytest.raises(
        shards.ShardError, match=r"train2014-000000\.tar: holds 2 samples, too few for a full shard"
    ) as err:
        vqa.answer_vocabulary(copied, 5)
    one_line(err)
    cut_after(copied / "vqa" / "val2014-000001.tar", 1, zeros=True)
    with pytest.raises(shards.ShardError, match=r"val2014-000001\.tar: holds 1 samples, where 3 are left") as err:
        vqa.questions_of(copied, "val2014")
    one_line(err)


def test_samples_of_every_shard_are_counted_in_every_process(copied):
    urls = shards.shard_urls(copied, "vqa", "val2014")
    assert len(list(shards.samples(urls, split="none"))) == 8  # 5 + 3
    cut_after(copied / "vqa" / "val2014-000001.tar", 1, zeros=True)
    with pytest.raises(shards.ShardError, match=r"val2014-000001\.tar: holds 1 samples, where 3 are left for the last"):
        list(shards.samples(urls, split="none"))


def rename_coco_image(raw, old: str, new: str) -> None:
    index = raw / "coco" / "dataset_coco.json"
    (raw / "coco" / "train2014" / old).rename(raw / "coco" / "train2014" / new)
    index.write_text(index.read_text().replace(old, new))


def test_a_key_with_a_dot_is_refused_at_shard_time(tiny_raw, tmp_path):
    raw = copy_raw(tiny_raw, tmp_path)
    rename_coco_image(raw, "COCO_train2014_000000000006.jpg", "COCO.train2014.000000000006.jpg")
    with pytest.raises(shards.ShardError, match=r"coco/train: key 'COCO\.train2014\.000000000006' .*has a '\.'") as err:
        shards.write_all(["coco"], raw, tmp_path / "shards", 5, 0.0)
    assert "COCO.train2014.000000000006.jpg" in one_line(err)
    assert not (tmp_path / "shards" / "coco").exists()


def test_a_repeated_key_is_refused_at_shard_time(tiny_raw, tmp_path):
    raw = copy_raw(tiny_raw, tmp_path)
    index = raw / "coco" / "dataset_coco.json"
    data = json.loads(index.read_text())
    data["images"].append(data["images"][0])
    index.write_text(json.dumps(data))
    with pytest.raises(shards.ShardError, match=r"coco/\w+: key 'COCO_\w+' repeats"):
        shards.write_all(["coco"], raw, tmp_path / "shards", 5, 0.0)


def test_shard_error_from_a_dataloader_worker_keeps_one_line():
    wrapped = (
        "Caught ShardError in DataLoader worker process 3.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nsoho.data.shards.ShardError: /s/coco/val-000000.tar: holds 2 samples\n'
    )
    assert str(shards.ShardError(wrapped)) == "/s/coco/val-000000.tar: holds 2 samples (DataLoader worker process 3)"
    assert str(shards.ShardError("plain")) == "plain"


# Issue 15: all data sets and stats.json change together, or not at all.


def tree(root):
    """{relative path: bytes} of every file under ``root``, hidden ones too."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_failing_data_set_leaves_every_data_set_and_stats_as_they_were(tiny_raw, tmp_path):
    raw, out = copy_raw(tiny_raw, tmp_path), tmp_path / "shards"
    shards.write_all(["coco", "nlvr2", "vg"], raw, out, 5, 0.0)
    before = tree(out)
    next(iter((raw / "nlvr2" / "images" / "dev").rglob("*.png"))).write_bytes(b"not an image")
    with pytest.raises(shards.ShardError, match=r"nlvr2/dev: 1 of 4 samples are bad .*; no shards were changed") as err:
        shards.write_all(["coco", "nlvr2", "vg"], raw, out, 3, 0.0)  # coco (first) would shard 3 per file
    one_line(err)
    assert tree(out) == before  # coco too, and stats.json; nothing staged is left


def test_staging_a_killed_run_left_is_removed_at_the_next_run(tiny_raw, tmp_path):
    out = tmp_path / "shards"
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "from pathlib import Path\n"
            "from soho.data import shards\n"
            "shards.write_text = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # kill -9 after a data set\n"
            "shards.write_all(['coco', 'nlvr2'], Path(sys.argv[1]), Path(sys.argv[2]), 5, 0.0)\n",
            str(tiny_raw),
            str(out),
        ],
        env=dict(os.environ, PYTHONPATH=str(Path(shards.__file__).parents[2])),
    )
    assert killed.returncode == -signal.SIGKILL
    left = [p.name for p in out.iterdir()]
    assert left and all(name.startswith(".") for name in left)  # a staging folder, nothing swapped in
    (out / ".nlvr2.x1y2z3w4").mkdir()  # what earlier versions left (tempfile.mkdtemp's names)
    (out / ".keep").write_text("not a staging folder")
    shards.write_all(["coco", "nlvr2"], tiny_raw, out, 5, 0.0)
    assert sorted(p.name for p in out.iterdir()) == [".keep", "coco", "nlvr2", "stats.json"]


# Issue 16 (d): under torchrun a training reader takes its rank's shards, an evaluation reader all of them.


def test_rank_two_of_two_reads_its_shards_for_training_and_every_shard_for_evaluation(tiny_raw, tmp_path, monkeypatch):
    shards.write_all(["coco"], tiny_raw, tmp_path / "shards", 4, 0.0)  # train: 4 + 4 + 4
    urls = shards.shard_urls(tmp_path / "shards", "coco", "train")
    everything = read_keys(urls)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # what webdataset's splitters read under torchrun
    own = [k for b in shards.pipeline(urls, to_tensor, 2, collate) for k in b["key"]]
    assert own == everything[4:8]  # the second of three shards
    for readers in ("workers", "none"):
        assert [k for b in shards.pipeline(urls, to_tensor, 2, collate, split=readers) for k in b["key"]] == everything


def test_the_index_names_every_shard_with_its_sha256(tiny_shards):
    import hashlib

    index = json.loads((tiny_shards / "coco" / "index.json").read_text())
    for split, entry in index.items():
        assert sorted(entry["sha256"]) == sorted(entry["shards"]), split
        for name, digest in entry["sha256"].items():
            assert hashlib.sha256((tiny_shards / "coco" / name).read_bytes()).hexdigest() == digest, name
    assert shards.dataset_digest(tiny_shards, "coco") == (tiny_shards / "coco" / "index.json").read_text()
    assert shards.dataset_digest(tiny_shards, "no_such_dataset") == ""
