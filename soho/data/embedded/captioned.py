"""The captioned image sets: COCO and Flickr30k (Karpathy split files) and Visual Genome regions.

Why: pre-training and retrieval read these, and VQA and SNLI-VE ask about their images, so
the writers return each image's scene for the task sets to draw on.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from soho.config import SplitSizes, SyntheticData
from soho.data.catalog import VG_IMAGE_DATA, VG_IMAGE_FOLDERS
from soho.data.embedded import scenes
from soho.data.embedded.writing import SPLITS, dump_json, jpeg_bytes, sub_rng, write_bytes

# Karpathy split name -> COCO image folder (Karpathy's val/test images come from val2014).
COCO_FOLDER = {"train": "train2014", "val": "val2014", "test": "val2014"}


def _tokens(text: str) -> list[str]:
    return text.replace("?", "").split()


def karpathy_images(
    rng: random.Random, cfg: SyntheticData, sizes: SplitSizes, first_id: int
) -> Iterator[tuple[str, int, scenes.Scene, Image.Image, dict]]:
    """(split, image id, scene, image, Karpathy entry) for each image, split by split.

    Image ids run on from ``first_id``; the entry holds ``split``, ``imgid`` and the numbered
    ``sentences`` (counted over the whole file, as in Karpathy's); the caller adds the file fields.
    """
    imgid, sent_id, image_id = 0, 0, first_id
    for split in SPLITS:
        for _ in range(getattr(sizes, split)):
            scene = scenes.sample_scene(rng, cfg.max_objects)
            image = scenes.render(scene, cfg.image_size, rng)
            sentences = []
            for _ in range(cfg.captions_per_image):
                text = scenes.caption(scene, rng)
                sentences.append({"raw": text, "tokens": _tokens(text), "imgid": imgid, "sentid": sent_id})
                sent_id += 1
            sentids = [s["sentid"] for s in sentences]
            entry = {"imgid": imgid, "split": split, "sentids": sentids, "sentences": sentences}
            yield split, image_id, scene, image, entry
            imgid, image_id = imgid + 1, image_id + 1


def write_coco(root: Path, cfg: SyntheticData, seed: int) -> dict[int, scenes.Scene]:
    """COCO-style images + Karpathy ``dataset_coco.json``; returns scenes for VQA."""
    images, scene_of = [], {}
    for split, image_id, scene, image, entry in karpathy_images(sub_rng(seed, "coco"), cfg, cfg.coco, 1):
        folder = COCO_FOLDER[split]
        filename = f"COCO_{folder}_{image_id:012d}.jpg"
        write_bytes(root / "coco" / folder / filename, jpeg_bytes(image))
        images.append(entry | {"filepath": folder, "filename": filename, "cocoid": image_id})
        scene_of[image_id] = scene
    dump_json(root / "coco" / "dataset_coco.json", {"dataset": "coco", "images": images})
    return scene_of


def write_flickr30k(root: Path, cfg: SyntheticData, seed: int) -> dict[str, tuple[scenes.Scene, str]]:
    """Flickr30k-style images + Karpathy ``dataset_flickr30k.json``; returns scenes for SNLI-VE."""
    images, scene_of = [], {}
    for split, image_id, scene, image, entry in karpathy_images(sub_rng(seed, "flickr30k"), cfg, cfg.flickr30k, 10**6):
        filename = f"{image_id}.jpg"
        write_bytes(root / "flickr30k" / "flickr30k-images" / filename, jpeg_bytes(image))
        images.append(entry | {"filename": filename})
        scene_of[filename] = (scene, split)
    dump_json(root / "flickr30k" / "dataset_flickr30k.json", {"dataset": "flickr30k", "images": images})
    return scene_of


def write_visual_genome(root: Path, cfg: SyntheticData, seed: int) -> None:
    """Visual Genome images + ``region_descriptions.json`` (one region per shape) + ``image_data.json``.

    Two images in five go to ``VG_100K_2/``, as about 40% of the real ones come in ``images2.zip``.
    """
    rng = sub_rng(seed, "vg")
    entries, metadata, region_id = [], [], 1
    side = cfg.image_size
    for image_id in range(1, cfg.vg_images + 1):
        scene = scenes.sample_scene(rng, cfg.max_objects)
        folder = VG_IMAGE_FOLDERS[int(image_id % 5 < 2)]
        write_bytes(root / "vg" / folder / f"{image_id}.jpg", jpeg_bytes(scenes.render(scene, side, rng)))
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
        # the generated VG shares no image with the generated COCO: every coco_id is null
        metadata.append({"image_id": image_id, "coco_id": None, "flickr_id": None, "width": side, "height": side})
    dump_json(root / "vg" / "region_descriptions.json", entries)
    dump_json(root / "vg" / VG_IMAGE_DATA, metadata)
