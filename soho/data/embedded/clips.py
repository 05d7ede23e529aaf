"""The MSR-VTT clips: shapes moving in straight lines (animated GIF or H.264 MP4), with their captions.

Why: video retrieval needs clips whose captions only the motion decides (which shape moved
which way), written in MSR-VTT's own ``MSRVTT_data.json``.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image

from soho.config import SyntheticData
from soho.data import video
from soho.data.embedded import language, scenes
from soho.data.embedded.writing import SPLITS, dump_json, sub_rng, write_bytes

MSRVTT_SPLIT = {"train": "train", "val": "validate", "test": "test"}


def render_clip(rng: random.Random, cfg: SyntheticData) -> tuple[bytes, list[tuple[str, str, str]]]:
    """A clip (``cfg.clip_format``) of 1-2 shapes moving in straight lines; returns its bytes and the moves."""
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
    if cfg.clip_format == "mp4":
        return video.encode_mp4(frames, fps=10), moves
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue(), moves


def write_msrvtt(root: Path, cfg: SyntheticData, seed: int) -> None:
    """MSR-VTT ``MSRVTT_data.json`` (videos[], sentences[]) and the clips (``videos/all/<id>.gif`` or ``.mp4``)."""
    rng = sub_rng(seed, "msrvtt")
    videos, sentences, index = [], [], 0
    for split in SPLITS:
        for _ in range(getattr(cfg.msrvtt, split)):
            video_id = f"video{index}"
            clip, moves = render_clip(rng, cfg)
            write_bytes(root / "msrvtt" / "videos" / "all" / f"{video_id}.{cfg.clip_format}", clip)
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
