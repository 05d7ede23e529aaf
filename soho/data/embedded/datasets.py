"""Deterministic generator of the embedded data set, written in the real on-disk formats.

Why: the embedded profile must exercise the same readers, shards and models as the
paper profile without any download. Every file is a pure function of the seed and
the sizes in ``params.yaml`` (same seed -> byte-identical tree).
"""

from __future__ import annotations

import io
import json
import random
import zlib
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from soho.config import SyntheticData
from soho.data.embedded import language, scenes
from soho.io import atomic_directory

# Karpathy split name -> COCO image folder (Karpathy's val/test images come from val2014).
COCO_FOLDER = {"train": "train2014", "val": "val2014", "test": "val2014"}
VQA_SUBTYPE = {"train": "train2014", "val": "val2014", "test": "val2014"}
NLVR2_SPLIT = {"train": "train", "val": "dev", "test": "test1"}
SNLI_VE_SPLIT = {"train": "train", "val": "dev", "test": "test"}
MSRVTT_SPLIT = {"train": "train", "val": "validate", "test": "test"}
SPLITS = ("train", "val", "test")


def sub_rng(seed: int, name: str) -> random.Random:
    """An independent, reproducible random stream per (seed, purpose)."""
    return random.Random(zlib.crc32(f"{seed}:{name}".encode()))


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    """Plain write: the whole tree is staged and swapped in by :func:`atomic_directory`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def dump_json(path: Path, payload: object) -> None:
    write_bytes(path, json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def dump_jsonl(path: Path, rows: list[dict]) -> None:
    write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())


def _tokens(text: str) -> list[str]:
    return text.replace("?", "").split()


def _captioned_images(
    rng: random.Random, cfg: SyntheticData, count: int, first_id: int
) -> Iterator[tuple[int, scenes.Scene, Image.Image, list[str]]]:
    for offset in range(count):
        scene = scenes.sample_scene(rng, cfg.max_objects)
        image = scenes.render(scene, cfg.image_size, rng)
        captions = [scenes.caption(scene, rng) for _ in range(cfg.captions_per_image)]
        yield first_id + offset, scene, image, captions


def write_coco(root: Path, cfg: SyntheticData, seed: int) -> dict[int, scenes.Scene]:
    """COCO-style images + Karpathy ``dataset_coco.json``; returns scenes for VQA/VG."""
    rng = sub_rng(seed, "coco")
    images, scene_of, sent_id, next_id = [], {}, 0, 1
    for split in SPLITS:
        count = getattr(cfg.coco, split)
        for image_id, scene, image, captions in _captioned_images(rng, cfg, count, next_id):
            folder = COCO_FOLDER[split]
            filename = f"COCO_{folder}_{image_id:012d}.jpg"
            write_bytes(root / "coco" / folder / filename, jpeg_bytes(image))
            sentences = []
            for text in captions:
                sentences.append({"raw": text, "tokens": _tokens(text), "imgid": len(images), "sentid": sent_id})
                sent_id += 1
            images.append(
                {
                    "filepath": folder,
                    "filename": filename,
                    "imgid": len(images),
                    "split": split,
                    "cocoid": image_id,
                    "sentids": [s["sentid"] for s in sentences],
                    "sentences": sentences,
                }
            )
            scene_of[image_id] = scene
        next_id += count
    dump_json(root / "coco" / "dataset_coco.json", {"dataset": "coco", "images": images})
    return scene_of


def write_flickr30k(root: Path, cfg: SyntheticData, seed: int) -> dict[str, tuple[scenes.Scene, str]]:
    """Flickr30k-style images + Karpathy ``dataset_flickr30k.json``; returns scenes for SNLI-VE."""
    rng = sub_rng(seed, "flickr30k")
    images, scene_of, sent_id, next_id = [], {}, 0, 1000000
    for split in SPLITS:
        count = getattr(cfg.flickr30k, split)
        for image_id, scene, image, captions in _captioned_images(rng, cfg, count, next_id):
            filename = f"{image_id}.jpg"
            write_bytes(root / "flickr30k" / "flickr30k-images" / filename, jpeg_bytes(image))
            sentences = []
            for text in captions:
                sentences.append({"raw": text, "tokens": _tokens(text), "imgid": len(images), "sentid": sent_id})
                sent_id += 1
            images.append(
                {
                    "filename": filename,
                    "imgid": len(images),
                    "split": split,
                    "sentids": [s["sentid"] for s in sentences],
                    "sentences": sentences,
                }
            )
            scene_of[filename] = (scene, split)
        next_id += count
    dump_json(root / "flickr30k" / "dataset_flickr30k.json", {"dataset": "flickr30k", "images": images})
    return scene_of


def write_visual_genome(root: Path, cfg: SyntheticData, seed: int) -> None:
    """Visual Genome images + ``region_descriptions.json`` (one region per shape)."""
    rng = sub_rng(seed, "vg")
    entries, region_id = [], 1
    side = cfg.image_size
    for image_id in range(1, cfg.vg_images + 1):
        scene = scenes.sample_scene(rng, cfg.max_objects)
        write_bytes(root / "vg" / "VG_100K" / f"{image_id}.jpg", jpeg_bytes(scenes.render(scene, side, rng)))
        regions = []
        for thing in scene.things:
            extent = int(scenes.SIZES[thing.size] * side * 1.6)
            x = int(scenes.COLUMNS[thing.column] * side) - extent // 2
            y = int(scenes.ROWS[thing.row] * side) - extent // 2
            regions.append(
                {
                    "region_id": region_id,
                    "image_id": image_id,
                    "phrase": f"{scenes._article(thing.size)} {thing.phrase}",
                    "x": max(0, x),
                    "y": max(0, y),
                    "width": extent,
                    "height": extent,
                }
            )
            region_id += 1
        entries.append({"id": image_id, "regions": regions})
    dump_json(root / "vg" / "region_descriptions.json", entries)


def write_vqa(root: Path, cfg: SyntheticData, seed: int, coco: list[dict], scene_of: dict) -> None:
    """VQA v2 question and annotation files over the COCO-style images."""
    rng = sub_rng(seed, "vqa")
    by_subtype: dict[str, tuple[list, list]] = {}
    question_id = 1
    for entry in coco:
        subtype = VQA_SUBTYPE[entry["split"]]
        questions, annotations = by_subtype.setdefault(subtype, ([], []))
        scene = scene_of[entry["cocoid"]]
        for _ in range(cfg.vqa_questions_per_image):
            q = language.vqa_question(scene, rng)
            answers = language.annotator_answers(q, rng)
            questions.append({"image_id": entry["cocoid"], "question": q.question, "question_id": question_id})
            annotations.append(
                {
                    "question_id": question_id,
                    "image_id": entry["cocoid"],
                    "question_type": q.question_type,
                    "answer_type": q.answer_type,
                    "multiple_choice_answer": language.majority(answers),
                    "answers": [
                        {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
                    ],
                }
            )
            question_id += 1
    for subtype, (questions, annotations) in sorted(by_subtype.items()):
        header = {"task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": subtype}
        dump_json(root / "vqa" / f"v2_OpenEnded_mscoco_{subtype}_questions.json", {**header, "questions": questions})
        dump_json(root / "vqa" / f"v2_mscoco_{subtype}_annotations.json", {**header, "annotations": annotations})


def write_nlvr2(root: Path, cfg: SyntheticData, seed: int) -> None:
    """NLVR2 JSON lines (``identifier``, ``sentence``, ``label``) and ``-img0``/``-img1`` PNG pairs.

    As in NLVR2, one sentence describes a set of four image pairs, two true and two false
    (identifiers ``split-set-pair-0``), so the sentence alone is at chance and consistency
    (all four pairs right) measures grounding.
    """
    rng = sub_rng(seed, "nlvr2")
    for split in SPLITS:
        name = NLVR2_SPLIT[split]
        rows = []
        for pair in range(getattr(cfg.nlvr2, split)):
            if pair % 4 == 0:
                sentence, judge = language.nlvr2_statement(rng)
                wants = rng.sample([True, True, False, False], 4)
            left, right, truth = language.nlvr2_pair(judge, wants[pair % 4], rng, cfg.max_objects)
            stem = f"{name}-{pair // 4}-{pair % 4}"
            write_bytes(
                root / "nlvr2" / "images" / name / f"{stem}-img0.png",
                png_bytes(scenes.render(left, cfg.image_size, rng)),
            )
            write_bytes(
                root / "nlvr2" / "images" / name / f"{stem}-img1.png",
                png_bytes(scenes.render(right, cfg.image_size, rng)),
            )
            rows.append({"identifier": f"{stem}-0", "sentence": sentence, "label": "True" if truth else "False"})
        dump_jsonl(root / "nlvr2" / f"{name}.json", rows)


def snli_ve_hypothesis(scene: scenes.Scene, rng: random.Random, max_objects: int) -> tuple[str, str]:
    """(hypothesis, gold label), balanced so that the text alone decides no label.

    Four equally likely kinds: true (entailment), true + undecidable clause (neutral), false
    (contradiction), false + undecidable clause (contradiction). A hypothesis with the clause
    is neutral or contradiction, one without is entailment or contradiction, each at even odds:
    text alone scores at most 50%; the image decides the rest (labels 1/4, 1/4, 1/2).
    """
    true, clause = rng.random() < 0.5, rng.random() < 0.5
    if true:
        statement = scenes.true_statement(scene, rng, objects_only=clause)
    else:
        statement = scenes.false_statement(scene, rng, max_objects, objects_only=clause)
    if clause:
        return scenes.undecidable(statement, rng), "neutral" if true else "contradiction"
    return statement, "entailment" if true else "contradiction"


def write_snli_ve(root: Path, cfg: SyntheticData, seed: int, scene_of: dict) -> None:
    """SNLI-VE JSON lines over the Flickr30k-style images, all three labels (see ``snli_ve_hypothesis``)."""
    rng = sub_rng(seed, "snli_ve")
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}  # written under SNLI_VE_SPLIT names
    pair_id = 0
    for filename, (scene, split) in scene_of.items():
        for _ in range(cfg.snli_ve_hypotheses_per_image):
            hypothesis, label = snli_ve_hypothesis(scene, rng, cfg.max_objects)
            rows[split].append(
                {
                    "Flikr30kID": filename,
                    "sentence1": scenes.caption(scene, rng),
                    "sentence2": hypothesis,
                    "gold_label": label,
                    "pairID": f"{filename}#{pair_id}",
                }
            )
            pair_id += 1
    for split, split_rows in rows.items():
        dump_jsonl(root / "snli_ve" / f"snli_ve_{SNLI_VE_SPLIT[split]}.jsonl", split_rows)


def render_clip(rng: random.Random, cfg: SyntheticData) -> tuple[bytes, list[tuple[str, str, str]]]:
    """An animated GIF of 1-2 shapes moving in straight lines; returns bytes and the moves."""
    count = rng.randint(1, 2)
    moves = []
    tracks = []
    for _ in range(count):
        shape, color, direction = (
            rng.choice(scenes.SHAPES),
            rng.choice(list(scenes.COLORS)),
            rng.choice(list(language.DIRECTIONS)),
        )
        dx, dy = language.DIRECTIONS[direction]
        start = (
            0.5 - 0.3 * dx + rng.uniform(-0.1, 0.1) * (dx == 0),
            0.5 - 0.3 * dy + rng.uniform(-0.1, 0.1) * (dy == 0),
        )
        moves.append((color, shape, direction))
        tracks.append((scenes.Thing(shape, color, "small", "center", "middle"), start, (dx, dy)))
    grey = rng.randint(60, 120)
    frames = []
    for f in range(cfg.clip_frames):
        progress = f / max(1, cfg.clip_frames - 1)
        frame = Image.new("RGB", (cfg.clip_size, cfg.clip_size), (grey, grey, grey))
        draw = scenes.ImageDraw.Draw(frame)
        for thing, (sx, sy), (dx, dy) in tracks:
            scenes.draw_thing(draw, thing, cfg.clip_size, sx + 0.6 * dx * progress, sy + 0.6 * dy * progress)
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue(), moves


def write_msrvtt(root: Path, cfg: SyntheticData, seed: int) -> None:
    """MSR-VTT ``MSRVTT_data.json`` (videos[], sentences[]) and the clips (animated GIF)."""
    rng = sub_rng(seed, "msrvtt")
    videos, sentences, index = [], [], 0
    for split in SPLITS:
        for _ in range(getattr(cfg.msrvtt, split)):
            video_id = f"video{index}"
            clip, moves = render_clip(rng, cfg)
            write_bytes(root / "msrvtt" / "videos" / "all" / f"{video_id}.gif", clip)
            videos.append(
                {
                    "id": index,
                    "video_id": video_id,
                    "category": 0,
                    "url": f"embedded://{video_id}",
                    "start time": 0.0,
                    "end time": cfg.clip_frames / 10,
                    "split": MSRVTT_SPLIT[split],
                }
            )
            for _ in range(cfg.captions_per_image):
                sentences.append(
                    {
                        "caption": language.clip_caption(moves, rng),
                        "video_id": video_id,
                        "sen_id": len(sentences),
                    }
                )
            index += 1
    dump_json(
        root / "msrvtt" / "MSRVTT_data.json",
        {"info": {"dataset": "embedded"}, "videos": videos, "sentences": sentences},
    )


def generate(target: Path, cfg: SyntheticData, seed: int) -> Path:
    """Write the whole embedded data set under ``target`` (replaced atomically)."""
    with atomic_directory(Path(target)) as root:
        coco_scenes = write_coco(root, cfg, seed)
        coco_entries = json.loads((root / "coco" / "dataset_coco.json").read_text())["images"]
        write_vqa(root, cfg, seed, coco_entries, coco_scenes)
        write_visual_genome(root, cfg, seed)
        flickr_scenes = write_flickr30k(root, cfg, seed)
        write_snli_ve(root, cfg, seed, flickr_scenes)
        write_nlvr2(root, cfg, seed)
        write_msrvtt(root, cfg, seed)
    return Path(target)
