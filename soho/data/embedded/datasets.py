"""Deterministic generator of the embedded data set, written in the real on-disk formats.

Why: the embedded profile must exercise the same readers, shards and models as the
paper profile without any download. Every file is a pure function of the seed and
the sizes in ``params.yaml`` (same seed -> byte-identical tree on any CPU, MP4 clips included:
``soho.data.video.encode_mp4`` pins x264 to its C code without mb-tree). The writers live by
kind: ``captioned`` (COCO, Flickr30k, Visual Genome), ``task_sets`` (VQA, NLVR2,
SNLI-VE) and ``clips`` (MSR-VTT); each draws from its own random stream.
"""

from __future__ import annotations

import json
from pathlib import Path

from soho.config import SyntheticData
from soho.data.embedded import captioned, clips, task_sets
from soho.io import atomic_directory


def generate(target: Path, cfg: SyntheticData, seed: int) -> Path:
    """Write the whole embedded data set under ``target`` (replaced atomically)."""
    with atomic_directory(Path(target)) as root:
        coco_scenes = captioned.write_coco(root, cfg, seed)
        coco_entries = json.loads((root / "coco" / "dataset_coco.json").read_text())["images"]
        task_sets.write_vqa(root, cfg, seed, coco_entries, coco_scenes)
        captioned.write_visual_genome(root, cfg, seed)
        flickr_scenes = captioned.write_flickr30k(root, cfg, seed)
        task_sets.write_snli_ve(root, cfg, seed, flickr_scenes)
        task_sets.write_nlvr2(root, cfg, seed)
        clips.write_msrvtt(root, cfg, seed)
    return Path(target)
