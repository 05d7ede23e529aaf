"""What every embedded writer shares: its random stream, image encodings and plain file writes.

Why: each data set draws from its own stream (seed, purpose), so adding or changing one
writer leaves every other file byte-identical; and all of them encode and write the same way.
"""

from __future__ import annotations

import io
import json
import random
import zlib
from pathlib import Path

from PIL import Image

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
    """Plain write: the whole tree is staged and swapped in by :func:`soho.io.atomic_directory`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def dump_json(path: Path, payload: object) -> None:
    write_bytes(path, json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def dump_jsonl(path: Path, rows: list[dict]) -> None:
    write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
