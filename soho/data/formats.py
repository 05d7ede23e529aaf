"""Readers of the real on-disk formats (the embedded generator writes the same ones).

Why: one reader per format serves both the generated files and the official
downloads, so the embedded profile tests the paper profile's data path. Readers
return plain records with resolved file paths; they do not open images.
Bad records raise :class:`FormatError` naming the file, the record and the field: every
field a reader uses is checked (presence, type, allowed values), and every path taken from
a data file must stay inside its data set's folder (no absolute paths, no climbing out with
``..``; checked on the path's text, so a folder that is a symlink elsewhere still works).
"""

from __future__ import annotations

import errno
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from soho.data.fields import (
    FormatError,
    id_text,
    inside,
    iter_entries,
    iter_json_lines,
    load_json,
    require,
    require_choice,
    require_int,
    require_objects,
    require_text,
    shown,
    text_value,
)

__all__ = ["FormatError"]  # re-exported: the stage kit and the callers catch it from here

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
NLVR2_LABELS = {"true": True, "false": False}
SNLI_VE_LABELS = ("contradiction", "entailment", "neutral")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".gif")
VQA_ANSWERS = 10  # annotator answers per VQA v2 question; the official accuracy needs all ten
VQA_ANSWER_TYPES = ("number", "other", "yes/no")
MSRVTT_SPLITS = ("test", "train", "validate")


@dataclass(frozen=True)
class CaptionedImage:
    image_id: str
    path: Path
    split: str
    captions: list[str]
    source_split: str = ""


@dataclass(frozen=True)
class VqaQuestion:
    question_id: int
    image_id: int
    question: str
    answers: list[str] | None = None
    answer_type: str | None = None
    question_type: str | None = None
    multiple_choice_answer: str | None = None


@dataclass(frozen=True)
class Nlvr2Example:
    identifier: str
    sentence: str
    label: bool
    left: Path
    right: Path


@dataclass(frozen=True)
class EntailmentExample:
    pair_id: str
    image_id: str
    path: Path
    hypothesis: str
    label: str


@dataclass(frozen=True)
class Video:
    video_id: str
    path: Path
    split: str
    captions: list[str] = field(default_factory=list)


def stripped_texts(entry: dict[str, Any], key: str, text_key: str, where: str) -> list[str]:
    """The stripped ``text_key`` of each item in ``entry[key]`` (Karpathy sentences, VG region phrases)."""
    return [require_text(item, text_key, at).strip() for at, item in require_objects(entry, key, where)]


def read_karpathy(path: Path, image_root: Path) -> list[CaptionedImage]:
    """Karpathy split JSON (``dataset_coco.json`` / ``dataset_flickr30k.json``); restval counts as train."""
    path = Path(path)
    records = []
    for where, entry in iter_entries(path, load_json(path), "images"):
        filename = require_text(entry, "filename", where, empty=False)
        split = require_choice(entry, "split", KARPATHY_SPLITS, where)
        captions = stripped_texts(entry, "sentences", "raw", where)
        if not captions:
            raise FormatError(f"{where}: no sentences")
        filepath = text_value(entry.get("filepath", ""), "filepath", where)
        inside(image_root, where, "filepath", filepath)
        image = inside(image_root, where, "filename", filepath, filename)
        image_id = id_text(entry["cocoid"], "cocoid", where) if "cocoid" in entry else Path(filename).stem
        records.append(CaptionedImage(image_id, image, KARPATHY_SPLITS[split], captions, split))
    return records


def read_vg_regions(path: Path, image_roots: Path | Sequence[Path]) -> list[CaptionedImage]:
    """Visual Genome ``region_descriptions.json``: each image with its region phrases.

    ``image_roots``: the image folders, in order. Why several: VG ships its 108k images in two
    archives, ``images.zip`` (``VG_100K/``) and ``images2.zip`` (``VG_100K_2/``, about 40%);
    an image is taken from the first folder holding it (else the first folder's path, which
    the shard stage then counts as a missing file).
    """
    path = Path(path)
    roots = [Path(image_roots)] if isinstance(image_roots, str | Path) else [Path(r) for r in image_roots]
    records = []
    for where, entry in iter_entries(path, load_json(path)):
        key = "image_id" if "id" not in entry and "image_id" in entry else "id"
        image_id = id_text(require(entry, key, where), key, where)
        candidates = [inside(root, where, key, f"{image_id}.jpg") for root in roots]
        image = next((c for c in candidates if exists(c, where, key, image_id)), candidates[0])
        phrases = [p for p in stripped_texts(entry, "regions", "phrase", where) if p]
        if phrases:
            records.append(CaptionedImage(image_id, image, "train", phrases))
    return records


def read_vg_coco_ids(path: Path) -> dict[str, str]:
    """Visual Genome ``image_data.json``: {VG image id: COCO id} of the VG images that are COCO images.

    Why: about half of VG is COCO, Karpathy val and test images among them; pre-training must
    not see those (:func:`soho.data.catalog.vg`). ``coco_id`` is null for the others.
    """
    path = Path(path)
    coco_of = {}
    for where, entry in iter_entries(path, load_json(path)):
        key = "image_id" if "image_id" in entry else "id"  # v1.2 / v1.0
        image_id = id_text(require(entry, key, where), key, where)
        coco_id = require(entry, "coco_id", where)
        if coco_id is not None:
            coco_of[image_id] = id_text(coco_id, "coco_id", where)
    return coco_of


def karpathy_ids(path: Path, splits: Sequence[str]) -> set[str]:
    """The COCO ids (``cocoid``) of a Karpathy split file's images in ``splits`` (e.g. val, test)."""
    path = Path(path)
    ids = set()
    for where, entry in iter_entries(path, load_json(path), "images"):
        if require_choice(entry, "split", KARPATHY_SPLITS, where) in splits:
            ids.add(id_text(require(entry, "cocoid", where), "cocoid", where))
    return ids


def vqa_annotations(path: Path) -> dict[int, tuple[str, dict[str, Any]]]:
    """{question_id: (where, annotation)} of a VQA annotations file, each with exactly ten answers."""
    annotations: dict[int, tuple[str, dict[str, Any]]] = {}
    for where, ann in iter_entries(path, load_json(path), "annotations"):
        qid = require_int(ann, "question_id", where)
        if qid in annotations:
            raise FormatError(f"{where}: question_id {qid} repeats ({annotations[qid][0]})")
        answers = [require_text(a, "answer", at) for at, a in require_objects(ann, "answers", where)]
        if len(answers) != VQA_ANSWERS:
            raise FormatError(f"{where}: field 'answers' must hold {VQA_ANSWERS} answers (got {len(answers)})")
        require_choice(ann, "answer_type", VQA_ANSWER_TYPES, where)
        require_text(ann, "question_type", where)
        require_text(ann, "multiple_choice_answer", where)
        annotations[qid] = where, ann | {"answers": answers}
    return annotations


def read_vqa(questions_path: Path, annotations_path: Path | None = None) -> list[VqaQuestion]:
    """VQA v2 questions, joined with their annotations when the file exists (test sets have none)."""
    questions_path = Path(questions_path)
    annotations = {}
    if annotations_path is not None and Path(annotations_path).exists():
        annotations = vqa_annotations(Path(annotations_path))
    records = []
    seen: dict[int, str] = {}
    for where, q in iter_entries(questions_path, load_json(questions_path), "questions"):
        qid = require_int(q, "question_id", where)
        if qid in seen:
            raise FormatError(f"{where}: question_id {qid} repeats ({seen[qid]})")
        seen[qid] = where
        _, ann = annotations.get(qid, (None, None))
        if annotations and ann is None:
            raise FormatError(f"{where}: question_id {qid} has no annotation in {annotations_path}")
        records.append(
            VqaQuestion(
                question_id=qid,
                image_id=require_int(q, "image_id", where),
                question=require_text(q, "question", where),
                answers=ann["answers"] if ann else None,
                answer_type=ann["answer_type"] if ann else None,
                question_type=ann["question_type"] if ann else None,
                multiple_choice_answer=ann["multiple_choice_answer"] if ann else None,
            )
        )
    return records


def read_nlvr2(path: Path, image_dir: Path) -> list[Nlvr2Example]:
    """NLVR2 JSON lines; images ``<stem>-img0.png``/``-img1.png`` (under ``directory`` when given)."""
    path = Path(path)
    records = []
    for _, where, row in iter_json_lines(path):
        identifier = require_text(row, "identifier", where, empty=False)
        stem = identifier.rpartition("-")[0]
        if not stem:
            raise FormatError(f"{where}: field 'identifier' must be <pair>-<sentence> (got {shown(identifier)})")
        label = require_choice(
            row, "label", NLVR2_LABELS, where, expected="True or False", fold=lambda v: str(v).lower()
        )
        folder = Path(image_dir)
        if "directory" in row:
            folder = inside(image_dir, where, "directory", id_text(row["directory"], "directory", where))
        records.append(
            Nlvr2Example(
                identifier,
                require_text(row, "sentence", where),
                NLVR2_LABELS[label],
                inside(folder, where, "identifier", f"{stem}-img0.png"),
                inside(folder, where, "identifier", f"{stem}-img1.png"),
            )
        )
    return records


def read_snli_ve(path: Path, image_root: Path) -> list[EntailmentExample]:
    """SNLI-VE JSON lines over Flickr30k images; labels contradiction/entailment/neutral."""
    path = Path(path)
    records = []
    for number, where, row in iter_json_lines(path):
        label = require_choice(row, "gold_label", SNLI_VE_LABELS, where)
        image = require_text(row, "Flikr30kID", where, empty=False)
        filename = image if image.endswith(".jpg") else f"{image}.jpg"
        records.append(
            EntailmentExample(
                id_text(row["pairID"], "pairID", where) if "pairID" in row else f"{path.stem}:{number}",
                Path(filename).stem,
                inside(image_root, where, "Flikr30kID", filename),
                require_text(row, "sentence2", where),
                label,
            )
        )
    return records


def read_msrvtt(path: Path, video_root: Path) -> list[Video]:
    """MSR-VTT ``MSRVTT_data.json``: videos with split and their captions."""
    path = Path(path)
    data = load_json(path)
    captions: dict[str, list[str]] = {}
    for where, sentence in iter_entries(path, data, "sentences"):
        video_id = require_text(sentence, "video_id", where, empty=False)
        captions.setdefault(video_id, []).append(require_text(sentence, "caption", where))
    records = []
    for where, video in iter_entries(path, data, "videos"):
        video_id = require_text(video, "video_id", where, empty=False)
        inside(video_root, where, "video_id", video_id)
        split = require_choice(video, "split", MSRVTT_SPLITS, where)
        clip = find_video(Path(video_root), video_id, where)
        records.append(Video(video_id, clip, split, captions.get(video_id, [])))
    return records


# The public archive (Frozen-in-Time's MSRVTT.zip): split lists beside the videos, one id per line.
# "full": the official 6,513 / 497 / 2,990 split; "jsfusion": the 1k-A split (9,000 training videos,
# 1,000 test videos with one caption each, chosen by jsfusion_val_caption_idx.pkl), as SCL reports.
MSRVTT_SPLIT_LISTS = {
    "train": "train_list_full.txt",
    "validate": "val_list_full.txt",
    "test": "test_list_full.txt",
    "train_9k": "train_list_jsfusion.txt",
    "test_1k": "val_list_jsfusion.txt",
}
MSRVTT_1K_CAPTIONS = "jsfusion_val_caption_idx.pkl"


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles built-in data (dicts, str, int) only: a pickle that names a class or function is refused."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise _RefusedClass(f"refusing to unpickle {module}.{name}: only plain data is expected")


class _RefusedClass(Exception):
    """Raised inside the unpickler; :func:`read_caption_choice` names the file."""


# what a damaged pickle raises besides UnpicklingError: a bad memo key, a truncated or odd opcode argument
_BROKEN_PICKLE = (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, IndexError, struct.error)


def read_caption_choice(path: Path) -> dict[str, int]:
    """``jsfusion_val_caption_idx.pkl``: {video id: index of its 1k-A caption among its captions, in file order}."""
    try:
        with open(path, "rb") as file:
            data = _PlainDataUnpickler(file).load()
    except _RefusedClass as err:
        raise FormatError(f"{path}: {err}") from None
    except _BROKEN_PICKLE as err:
        raise FormatError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and type(v) is int for k, v in data.items()):
        raise FormatError(f"{path}: expected a dict of video id -> caption index")
    return data


def read_msrvtt_archive(annotation: Path, lists: Path, video_root: Path) -> list[Video]:
    """MSR-VTT as its public archive unpacks: ``annotation/MSR_VTT.json`` (``annotations``: image_id, caption),
    the split lists in ``lists`` and ``videos/all/<id>.mp4``.

    Each video is a record per split list holding it (a 1k-A test video is also an official
    test video); a ``test_1k`` video keeps only the caption the 1k-A protocol queries with.
    """
    annotation = Path(annotation)
    captions: dict[str, list[str]] = {}
    for where, entry in iter_entries(annotation, load_json(annotation), "annotations"):
        video_id = require_text(entry, "image_id", where, empty=False)
        captions.setdefault(video_id, []).append(require_text(entry, "caption", where))
    choice = (
        read_caption_choice(Path(lists) / MSRVTT_1K_CAPTIONS) if (Path(lists) / MSRVTT_1K_CAPTIONS).exists() else None
    )
    records = []
    for split, name in MSRVTT_SPLIT_LISTS.items():
        listing = Path(lists) / name
        if not listing.exists():
            continue
        for line_number, line in enumerate(listing.read_text().splitlines(), 1):
            video_id, where = line.strip(), f"{listing}:{line_number}"
            if not video_id:
                continue
            inside(video_root, where, "video_id", video_id)
            if video_id not in captions:
                raise FormatError(f"{where}: video {shown(video_id)} has no caption in {annotation}")
            texts = captions[video_id]
            if split == "test_1k":
                if choice is None or video_id not in choice:
                    raise FormatError(
                        f"{where}: video {shown(video_id)} has no 1k-A caption in {lists / MSRVTT_1K_CAPTIONS}"
                    )
                if not 0 <= choice[video_id] < len(texts):
                    raise FormatError(
                        f"{lists / MSRVTT_1K_CAPTIONS}: caption {choice[video_id]} of {shown(video_id)}, "
                        f"which has {len(texts)} in {annotation}"
                    )
                texts = [texts[choice[video_id]]]
            records.append(Video(video_id, find_video(Path(video_root), video_id, where), split, list(texts)))
    if not records:
        raise FormatError(f"{lists}: none of the split lists {sorted(MSRVTT_SPLIT_LISTS.values())} is there")
    return records


def exists(path: Path, where: str, key: str, value: str) -> bool:
    """Whether ``path`` exists; a name too long for the file system is an error on field ``key`` of ``where``."""
    try:
        return path.exists()
    except OSError as err:
        if err.errno != errno.ENAMETOOLONG:
            raise
        raise FormatError(f"{where}: field {key!r} is too long for a file name (got {shown(value)})") from None


def find_video(root: Path, video_id: str, where: str) -> Path:
    """The clip file of ``video_id`` under ``root``, whatever its container (``.mp4`` if none exists).

    A ``video_id`` too long for a file name is an error on ``where`` (the fuzz test found the
    ``OSError`` that looking for it raised).
    """
    for extension in VIDEO_EXTENSIONS:
        candidate = root / f"{video_id}{extension}"
        if exists(candidate, where, "video_id", video_id):
            return candidate
    return root / f"{video_id}.mp4"
