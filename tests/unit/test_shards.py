import json
import shutil
import tarfile

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
