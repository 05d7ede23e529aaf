"""Fixture archives in the paper manifest's names and layouts, and a manifest that fetches them from loopback.

Why: the paper profile's ``download`` stage must be run as users run it, against archives
that unpack as the real ones do (``train2014.zip`` -> ``train2014/``, ``images2.zip`` ->
``VG_100K_2/``, ``MSRVTT.zip`` -> ``MSRVTT/annotation/MSR_VTT.json``, ...), with the real
manual steps (files placed in ``raw/_downloads``). The contents come from the embedded
generator at a few samples per split, re-packed; only the URLs and the pins change.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from soho.config import SplitSizes, SyntheticData
from soho.data.embedded import datasets

TEST_DEV_IMAGES = 2  # val images re-published as test2015 images: the VQA test-dev/test-std inputs


def paper_smoke_data() -> SyntheticData:
    """A few samples of every split: enough for each stage to train and score, at paper model sizes."""
    return SyntheticData(
        image_size=64,
        captions_per_image=2,
        coco=SplitSizes(train=4, val=2, test=2),
        flickr30k=SplitSizes(train=4, val=2, test=2),
        vg_images=4,
        vqa_questions_per_image=2,
        nlvr2=SplitSizes(train=4, val=4, test=4),
        snli_ve_hypotheses_per_image=2,
        msrvtt=SplitSizes(train=4, val=2, test=2),
        clip_frames=4,
        clip_size=32,
        clip_format="mp4",
    )


def zip_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_gz_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folder(root: Path, prefix: str) -> list[tuple[str, bytes]]:
    """Every file under ``root`` as (``prefix`` + relative path, bytes), sorted."""
    return [(prefix + p.relative_to(root).as_posix(), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


def dumps(obj) -> bytes:
    return json.dumps(obj).encode()


def vqa_test_files(raw: Path) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """test2015 images and the test2015 / test-dev2015 question files (no annotations, as released).

    The first val2014 images of the VQA file are re-published as test2015 images, with their questions.
    """
    questions = json.loads((raw / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    image_ids = sorted({q["image_id"] for q in questions["questions"]})[:TEST_DEV_IMAGES]
    images = [
        (
            f"test2015/COCO_test2015_{i:012d}.jpg",
            (raw / "coco" / "val2014" / f"COCO_val2014_{i:012d}.jpg").read_bytes(),
        )
        for i in image_ids
    ]
    asked = [q for q in questions["questions"] if q["image_id"] in image_ids]
    files = []
    for subtype in ("test2015", "test-dev2015"):
        header = {"task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": subtype}
        files.append((f"v2_OpenEnded_mscoco_{subtype}_questions.json", dumps({**header, "questions": asked})))
    return images, files


def msrvtt_archive(raw: Path) -> list[tuple[str, bytes]]:
    """The generator's ``MSRVTT_data.json`` re-packed as Frozen-in-Time's ``MSRVTT.zip`` unpacks.

    ``annotation/MSR_VTT.json``, ``videos/all/*.mp4``, and the split lists: the official
    train/val/test, and JSFusion 1k-A (train = train + val, test = test, with the caption
    index pickle choosing each test video's query).
    """
    data = json.loads((raw / "msrvtt" / "MSRVTT_data.json").read_text())
    annotations = [
        {"image_id": s["video_id"], "caption": s["caption"], "id": i} for i, s in enumerate(data["sentences"])
    ]
    by_split: dict[str, list[str]] = {}
    for video in data["videos"]:
        by_split.setdefault(video["split"], []).append(video["video_id"])
    lists = {
        "train_list_full.txt": by_split["train"],
        "val_list_full.txt": by_split["validate"],
        "test_list_full.txt": by_split["test"],
        "train_list_jsfusion.txt": by_split["train"] + by_split["validate"],
        "val_list_jsfusion.txt": by_split["test"],
    }
    members = [("MSRVTT/annotation/MSR_VTT.json", dumps({"annotations": annotations}))]
    members += folder(raw / "msrvtt" / "videos" / "all", "MSRVTT/videos/all/")
    where = "MSRVTT/high-quality/structured-symlinks/"
    members += [(where + name, "\n".join(ids).encode()) for name, ids in lists.items()]
    members.append((where + "jsfusion_val_caption_idx.pkl", pickle.dumps({v: 0 for v in by_split["test"]})))
    return members


def archives(raw: Path) -> dict[str, bytes]:
    """Every file of the paper manifest, by its manifest ``filename``, built from an embedded ``raw/``."""
    test_images, test_questions = vqa_test_files(raw)
    vqa = raw / "vqa"
    return {
        "train2014.zip": zip_bytes(folder(raw / "coco" / "train2014", "train2014/")),
        "val2014.zip": zip_bytes(folder(raw / "coco" / "val2014", "val2014/")),
        "test2015.zip": zip_bytes(test_images),
        "caption_datasets.zip": zip_bytes(
            [
                ("dataset_coco.json", (raw / "coco" / "dataset_coco.json").read_bytes()),
                ("dataset_flickr30k.json", (raw / "flickr30k" / "dataset_flickr30k.json").read_bytes()),
                ("dataset_flickr8k.json", dumps({"images": [], "dataset": "flickr8k"})),  # in the real zip, unused
            ]
        ),
        "vg_images.zip": zip_bytes(folder(raw / "vg" / "VG_100K", "VG_100K/")),
        "vg_images2.zip": zip_bytes(folder(raw / "vg" / "VG_100K_2", "VG_100K_2/")),
        "region_descriptions.json.zip": zip_bytes(
            [("region_descriptions.json", (raw / "vg" / "region_descriptions.json").read_bytes())]
        ),
        "image_data.json.zip": zip_bytes([("image_data.json", (raw / "vg" / "image_data.json").read_bytes())]),
        "v2_Questions_Train_mscoco.zip": zip_bytes(
            [(name, (vqa / name).read_bytes()) for name in ["v2_OpenEnded_mscoco_train2014_questions.json"]]
        ),
        "v2_Questions_Val_mscoco.zip": zip_bytes(
            [(name, (vqa / name).read_bytes()) for name in ["v2_OpenEnded_mscoco_val2014_questions.json"]]
        ),
        "v2_Questions_Test_mscoco.zip": zip_bytes(test_questions),
        "v2_Annotations_Train_mscoco.zip": zip_bytes(
            [(name, (vqa / name).read_bytes()) for name in ["v2_mscoco_train2014_annotations.json"]]
        ),
        "v2_Annotations_Val_mscoco.zip": zip_bytes(
            [(name, (vqa / name).read_bytes()) for name in ["v2_mscoco_val2014_annotations.json"]]
        ),
        "nlvr2_train.json": (raw / "nlvr2" / "train.json").read_bytes(),
        "nlvr2_dev.json": (raw / "nlvr2" / "dev.json").read_bytes(),
        "nlvr2_test1.json": (raw / "nlvr2" / "test1.json").read_bytes(),
        # train_img.zip holds images/train/<directory>/, dev_img.zip dev/, test1_img.zip test1/
        "train_img.zip": zip_bytes(folder(raw / "nlvr2" / "images" / "train", "images/train/")),
        "dev_img.zip": zip_bytes(folder(raw / "nlvr2" / "images" / "dev", "dev/")),
        "test1_img.zip": zip_bytes(folder(raw / "nlvr2" / "images" / "test1", "test1/")),
        "flickr30k-images.tar.gz": tar_gz_bytes(folder(raw / "flickr30k" / "flickr30k-images", "flickr30k-images/")),
        "snli_ve.zip": zip_bytes(folder(raw / "snli_ve", "")),
        "MSRVTT.zip": zip_bytes(msrvtt_archive(raw)),
    }


def build(manifest: Path, out: Path, base_url: str, seed: int = 0) -> tuple[dict[str, bytes], Path]:
    """Fixture archives for every source of ``manifest`` and a copy of it that fetches them from ``base_url``.

    Returns ({URL path: bytes} for the server, the manifest copy). Manual sources are placed
    in ``out/raw/_downloads`` as their instructions say; the others are served at the path of
    their real URL. Each pin becomes the fixture's own sha256 and size: the names, folders and
    members stay the real manifest's.
    """
    generated = datasets.generate(out / "generated", paper_smoke_data(), seed)
    files = archives(generated)
    shutil.rmtree(generated)
    sources = yaml.safe_load(Path(manifest).read_text())["sources"]
    served: dict[str, bytes] = {}
    downloads = out / "raw" / "_downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for source in sources:
        data = files.pop(source["filename"])
        path = urlsplit(source["url"]).path or "/"
        if source.get("manual"):
            (downloads / source["filename"]).write_bytes(data)
        else:
            served[path] = data
            source["url"] = base_url.rstrip("/") + path
        source |= {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        source.pop("pinned_from", None)
    if files:
        raise AssertionError(f"fixture archives no manifest source names: {sorted(files)}")
    copy = out / "manifest.yaml"
    copy.write_text(yaml.safe_dump({"sources": sources}, sort_keys=False))
    return served, copy
