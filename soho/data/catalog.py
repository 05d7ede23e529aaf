"""Where each data set lives under ``raw/`` and how its records become shard samples.

Why: the raw layout is the same for both profiles (the generator and the
manifest's extraction both produce it), so one table maps each data set and
split to its reader, and the shard stage needs no per-profile code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from soho.data import formats

VG_IMAGE_FOLDERS = ("VG_100K", "VG_100K_2")  # images.zip, images2.zip (as the archives unpack)
VG_IMAGE_DATA = "image_data.json"  # image_data.json.zip: each VG image's coco_id (or null)
VG_HELD_OUT_SPLIT = "coco_eval"  # VG images that are COCO Karpathy val/test images: not pre-trained on
COCO_EVAL_SPLITS = ("val", "test")
# MSRVTT.zip's split lists: frozen-in-time and SCL read the first copy, fitclip the second
MSRVTT_LIST_FOLDERS = ("high-quality/structured-symlinks", "structured-symlinks")


@dataclass(frozen=True)
class ShardSample:
    """One WebDataset sample: a key that keeps the original id, media files, and JSON metadata."""

    key: str
    media: dict[str, Path]
    meta: dict = field(default_factory=dict)


def _captioned(records: list[formats.CaptionedImage]) -> dict[str, list[ShardSample]]:
    splits: dict[str, list[ShardSample]] = {}
    for r in records:
        sample = ShardSample(
            r.path.stem,
            {"jpg": r.path},
            {"image_id": r.image_id, "captions": r.captions, "source_split": r.source_split},
        )
        splits.setdefault(r.split, []).append(sample)
    return splits


def coco(raw: Path) -> dict[str, list[ShardSample]]:
    return _captioned(formats.read_karpathy(raw / "coco" / "dataset_coco.json", raw / "coco"))


def flickr30k(raw: Path) -> dict[str, list[ShardSample]]:
    root = raw / "flickr30k"
    return _captioned(formats.read_karpathy(root / "dataset_flickr30k.json", root / "flickr30k-images"))


def vg(raw: Path) -> dict[str, list[ShardSample]]:
    """VG's images as pre-training's ``train``, except those that are COCO Karpathy val/test images.

    Those go to split ``coco_eval`` (sharded, counted in ``stats.json``, never read by
    pre-training): retrieval_coco is scored on Karpathy test, so pre-training on them would
    leak test images (README, "Pre-training data"). Karpathy restval stays in pre-training.
    """
    folders = [raw / "vg" / name for name in VG_IMAGE_FOLDERS]
    records = formats.read_vg_regions(raw / "vg" / "region_descriptions.json", folders)
    coco_of = formats.read_vg_coco_ids(_needed(raw / "vg" / VG_IMAGE_DATA, "maps VG images to COCO ids"))
    coco_eval = formats.karpathy_ids(
        _needed(raw / "coco" / "dataset_coco.json", "names the COCO val/test images VG must leave out"),
        COCO_EVAL_SPLITS,
    )
    return _captioned(
        [replace(r, split=VG_HELD_OUT_SPLIT) if coco_of.get(r.image_id) in coco_eval else r for r in records]
    )


def _needed(path: Path, why: str) -> Path:
    if not path.exists():
        raise formats.FormatError(f"{path}: missing; it {why} (dvc repro download fetches it)")
    return path


def vqa(raw: Path) -> dict[str, list[ShardSample]]:
    """One sample per image holding all of its questions; split = the VQA subtype (train2014, ...)."""
    root = raw / "vqa"
    splits: dict[str, list[ShardSample]] = {}
    for questions_file in sorted(root.glob("v2_OpenEnded_mscoco_*_questions.json")):
        subtype = questions_file.name.removeprefix("v2_OpenEnded_mscoco_").removesuffix("_questions.json")
        records = formats.read_vqa(questions_file, root / f"v2_mscoco_{subtype}_annotations.json")
        image_folder = "test2015" if subtype.startswith("test") else subtype
        by_image: dict[int, list[dict]] = {}
        for q in records:
            by_image.setdefault(q.image_id, []).append(
                {
                    "question_id": q.question_id,
                    "question": q.question,
                    "answers": q.answers,
                    "answer_type": q.answer_type,
                    "question_type": q.question_type,
                }
            )
        samples = []
        for image_id, questions in sorted(by_image.items()):
            stem = f"COCO_{image_folder}_{image_id:012d}"
            path = raw / "coco" / image_folder / f"{stem}.jpg"
            samples.append(ShardSample(stem, {"jpg": path}, {"image_id": image_id, "questions": questions}))
        splits[subtype] = samples
    if not splits:
        raise formats.FormatError(f"{root}: no v2_OpenEnded_mscoco_*_questions.json files")
    return splits


def nlvr2(raw: Path) -> dict[str, list[ShardSample]]:
    root = raw / "nlvr2"
    splits = {}
    for split in ("train", "dev", "test1"):
        records = formats.read_nlvr2(root / f"{split}.json", root / "images" / split)
        splits[split] = [
            ShardSample(
                r.identifier, {"img0.png": r.left, "img1.png": r.right}, {"sentence": r.sentence, "label": r.label}
            )
            for r in records
        ]
    return splits


def snli_ve(raw: Path) -> dict[str, list[ShardSample]]:
    """One sample per image holding all of its hypotheses."""
    splits = {}
    for split in ("train", "dev", "test"):
        records = formats.read_snli_ve(
            raw / "snli_ve" / f"snli_ve_{split}.jsonl", raw / "flickr30k" / "flickr30k-images"
        )
        by_image: dict[str, tuple[Path, list[dict]]] = {}
        for r in records:
            by_image.setdefault(r.image_id, (r.path, []))[1].append(
                {"pair_id": r.pair_id, "hypothesis": r.hypothesis, "label": r.label}
            )
        splits[split] = [
            ShardSample(image_id, {"jpg": path}, {"image_id": image_id, "hypotheses": hyps})
            for image_id, (path, hyps) in sorted(by_image.items())
        ]
    return splits


def msrvtt_videos(raw: Path) -> list[formats.Video]:
    """The public archive's layout (``msrvtt/MSRVTT/``: both splits) when it is there, else ``MSRVTT_data.json``.

    Why two: Frozen-in-Time's ``MSRVTT.zip`` (the archive SCL and most video-text work use) holds
    ``MSR_VTT.json`` and split lists, while the original release (and the embedded generator) has
    ``MSRVTT_data.json`` with a split per video.
    """
    root = raw / "msrvtt"
    archive = root / "MSRVTT"
    if (archive / "annotation" / "MSR_VTT.json").exists():
        lists = next((p for p in MSRVTT_LIST_FOLDERS if (archive / p).is_dir()), MSRVTT_LIST_FOLDERS[0])
        return formats.read_msrvtt_archive(
            archive / "annotation" / "MSR_VTT.json", archive / lists, archive / "videos" / "all"
        )
    return formats.read_msrvtt(root / "MSRVTT_data.json", root / "videos" / "all")


def msrvtt(raw: Path) -> dict[str, list[ShardSample]]:
    splits: dict[str, list[ShardSample]] = {}
    for v in msrvtt_videos(raw):
        sample = ShardSample(
            v.video_id, {v.path.suffix.lstrip("."): v.path}, {"video_id": v.video_id, "captions": v.captions}
        )
        splits.setdefault(v.split, []).append(sample)
    return splits


DATASETS: dict[str, Callable[[Path], dict[str, list[ShardSample]]]] = {
    "coco": coco,
    "flickr30k": flickr30k,
    "vg": vg,
    "vqa": vqa,
    "nlvr2": nlvr2,
    "snli_ve": snli_ve,
    "msrvtt": msrvtt,
}
