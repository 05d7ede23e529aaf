"""Readers of the real on-disk formats (the embedded generator writes the same ones).

Why: one reader per format serves both the generated files and the official
downloads, so the embedded profile tests the paper profile's data path. Readers
return plain records with resolved file paths; they do not open images.
Bad records raise :class:`FormatError` naming the file, the record and the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
NLVR2_LABELS = {"true": True, "false": False}
SNLI_VE_LABELS = ("contradiction", "entailment", "neutral")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".gif")


class FormatError(ValueError):
    """A data file does not follow its format."""


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


def load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise FormatError(f"{path}: not valid JSON ({err})") from None


def iter_json_lines(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, where, record) for each non-empty line of a JSON-lines file.

    ``where`` (``file: line 3``) names the line in the errors its fields raise.
    """
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise FormatError(f"{where}: not valid JSON ({err})") from None
            if not isinstance(record, dict):
                raise FormatError(f"{where}: expected an object")
            yield number, where, record


def require(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise FormatError(f"{where}: missing field {key!r}")
    return record[key]


def require_choice(
    record: dict[str, Any],
    key: str,
    choices: Collection[Any],
    where: str,
    *,
    expected: str = "",
    fold: Callable[[Any], Any] | None = None,
) -> Any:
    """Field ``key`` (through ``fold`` when given) if it is one of ``choices``; else an error saying what it may be."""
    value = require(record, key, where)
    chosen = fold(value) if fold else value
    if chosen not in choices:
        raise FormatError(f"{where}: field {key!r} must be {expected or f'one of {sorted(choices)}'} (got {value!r})")
    return chosen


def iter_entries(path: Path, data: Any, key: str | None = None) -> Iterator[tuple[str, Any]]:
    """(where, entry) for each entry of a JSON list: the file's top level, or its field ``key``.

    ``where`` (``file: images[3]``, ``file: [3]`` at the top level) names the entry in the
    errors its fields raise.
    """
    entries = data
    if key is not None:
        entries = require(data, key, str(path)) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise FormatError(f"{path}: {'top level' if key is None else f'field {key!r}'} must be a list")
    for index, entry in enumerate(entries):
        yield f"{path}: {key or ''}[{index}]", entry


def stripped_texts(entry: dict[str, Any], key: str, text_key: str, where: str) -> list[str]:
    """The stripped ``text_key`` of each item in ``entry[key]`` (Karpathy sentences, VG region phrases)."""
    items = require(entry, key, where)
    return [require(item, text_key, f"{where}.{key}[{i}]").strip() for i, item in enumerate(items)]


def read_karpathy(path: Path, image_root: Path) -> list[CaptionedImage]:
    """Karpathy split JSON (``dataset_coco.json`` / ``dataset_flickr30k.json``); restval counts as train."""
    path = Path(path)
    records = []
    for where, entry in iter_entries(path, load_json(path), "images"):
        filename = require(entry, "filename", where)
        split = require_choice(entry, "split", KARPATHY_SPLITS, where)
        captions = stripped_texts(entry, "sentences", "raw", where)
        if not captions:
            raise FormatError(f"{where}: no sentences")
        folder = Path(image_root) / entry.get("filepath", "")
        image_id = str(entry.get("cocoid", Path(filename).stem))
        records.append(CaptionedImage(image_id, folder / filename, KARPATHY_SPLITS[split], captions, split))
    return records


def read_vg_regions(path: Path, image_root: Path) -> list[CaptionedImage]:
    """Visual Genome ``region_descriptions.json``: each image with its region phrases."""
    path = Path(path)
    records = []
    for where, entry in iter_entries(path, load_json(path)):
        image_id = entry.get("id", entry.get("image_id"))
        if image_id is None:
            raise FormatError(f"{where}: missing field 'id'")
        phrases = [p for p in stripped_texts(entry, "regions", "phrase", where) if p]
        if phrases:
            records.append(CaptionedImage(str(image_id), Path(image_root) / f"{image_id}.jpg", "train", phrases))
    return records


def read_vqa(questions_path: Path, annotations_path: Path | None = None) -> list[VqaQuestion]:
    """VQA v2 questions, joined with their annotations when the file exists (test sets have none)."""
    questions_path = Path(questions_path)
    annotations: dict[int, dict[str, Any]] = {}
    if annotations_path is not None and Path(annotations_path).exists():
        for where, ann in iter_entries(annotations_path, load_json(annotations_path), "annotations"):
            annotations[int(require(ann, "question_id", where))] = ann
    records = []
    for where, q in iter_entries(questions_path, load_json(questions_path), "questions"):
        qid = int(require(q, "question_id", where))
        ann = annotations.get(qid)
        if annotations and ann is None:
            raise FormatError(f"{where}: question_id {qid} has no annotation in {annotations_path}")
        answers = None
        if ann is not None:
            answers = [require(a, "answer", f"{annotations_path}: question_id {qid}") for a in ann["answers"]]
        records.append(
            VqaQuestion(
                question_id=qid,
                image_id=int(require(q, "image_id", where)),
                question=str(require(q, "question", where)),
                answers=answers,
                answer_type=ann.get("answer_type") if ann else None,
                question_type=ann.get("question_type") if ann else None,
                multiple_choice_answer=ann.get("multiple_choice_answer") if ann else None,
            )
        )
    return records


def read_nlvr2(path: Path, image_dir: Path) -> list[Nlvr2Example]:
    """NLVR2 JSON lines; images ``<stem>-img0.png``/``-img1.png`` (under ``directory`` when given)."""
    path = Path(path)
    records = []
    for _, where, row in iter_json_lines(path):
        identifier = str(require(row, "identifier", where))
        label = require_choice(
            row, "label", NLVR2_LABELS, where, expected="True or False", fold=lambda v: str(v).lower()
        )
        stem = identifier.rsplit("-", 1)[0]
        folder = Path(image_dir) / str(row["directory"]) if "directory" in row else Path(image_dir)
        records.append(
            Nlvr2Example(
                identifier,
                str(require(row, "sentence", where)),
                NLVR2_LABELS[label],
                folder / f"{stem}-img0.png",
                folder / f"{stem}-img1.png",
            )
        )
    return records


def read_snli_ve(path: Path, image_root: Path) -> list[EntailmentExample]:
    """SNLI-VE JSON lines over Flickr30k images; labels contradiction/entailment/neutral."""
    path = Path(path)
    records = []
    for number, where, row in iter_json_lines(path):
        label = require_choice(row, "gold_label", SNLI_VE_LABELS, where)
        image = str(require(row, "Flikr30kID", where))
        filename = image if image.endswith(".jpg") else f"{image}.jpg"
        records.append(
            EntailmentExample(
                str(row.get("pairID", f"{path.stem}:{number}")),
                Path(filename).stem,
                Path(image_root) / filename,
                str(require(row, "sentence2", where)),
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
        captions.setdefault(str(require(sentence, "video_id", where)), []).append(
            str(require(sentence, "caption", where))
        )
    records = []
    for where, video in iter_entries(path, data, "videos"):
        video_id = str(require(video, "video_id", where))
        records.append(
            Video(
                video_id,
                find_video(Path(video_root), video_id),
                str(require(video, "split", where)),
                captions.get(video_id, []),
            )
        )
    return records


def find_video(root: Path, video_id: str) -> Path:
    """The clip file of ``video_id`` under ``root``, whatever its container (``.mp4`` if none exists)."""
    for extension in VIDEO_EXTENSIONS:
        candidate = root / f"{video_id}{extension}"
        if candidate.exists():
            return candidate
    return root / f"{video_id}.mp4"
