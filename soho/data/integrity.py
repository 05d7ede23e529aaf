"""What vouches that a file is complete, and the sidecar that remembers it.

Why: a file cut short by a dropped connection looks like any other file. It is trusted only
when something vouches for it (:func:`vouch`): a pinned sha256 or size, the length the
server announced, or, for an archive, a read of its whole index. Only then is its sha256
recorded, in ``<file>.verified.json`` beside it with the size and mtime it had; a file
whose sidecar is missing or stale (a crash, an older run, a copy) is checked again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from soho.data.archives import read_index
from soho.io import write_text


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Verified:
    """A file known to be complete: its digest, its size and what vouched for it."""

    sha256: str
    size: int
    verified_by: str  # "sha256 pin", "size pin", "content-length" or "archive index"


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def recorded(path: Path, sha256: str | None = None, size: int | None = None) -> Verified | None:
    """The sidecar's record, if it still describes ``path`` (size, mtime) and agrees with the pins."""
    try:
        data = json.loads(sidecar_of(path).read_text())
        stat = path.stat()
        known = Verified(data["sha256"], data["size"], data["verified_by"])
        unchanged = data["size"] == stat.st_size and data["mtime_ns"] == stat.st_mtime_ns
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    agrees = (sha256 is None or known.sha256 == sha256.lower()) and (size is None or known.size == size)
    return known if unchanged and agrees else None


def record(path: Path, verified: Verified) -> Verified:
    entry = {**verified.__dict__, "mtime_ns": path.stat().st_mtime_ns}
    write_text(sidecar_of(path), json.dumps(entry, indent=1, sort_keys=True))
    return verified


def forget(path: Path) -> None:
    """Delete a file with its sidecar and any partial download of it."""
    for stale in (path, sidecar_of(path), path.with_name(path.name + ".part")):
        stale.unlink(missing_ok=True)


class Unverified(Exception):
    """A file's pins or announced length disagree with it; the message says how."""


def vouch(path: Path, sha256: str | None, size: int | None, announced: int | None, archive: bool) -> Verified | None:
    """What vouches that ``path`` is complete, strongest first; ``None`` when nothing can.

    Raises :class:`Unverified` on a pin or length mismatch, and
    :class:`soho.data.archives.CorruptArchiveError` when an archive's index cannot be read.
    """
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise Unverified(f"size mismatch: expected {size} bytes, got {actual}")
    if announced is not None and actual != announced:
        raise Unverified(f"got {actual} bytes, the server announced {announced}")
    digest = sha256_of(path)
    if sha256 is not None and digest != sha256.lower():
        raise Unverified(f"sha256 mismatch: expected {sha256}, got {digest}")
    if sha256 is not None or size is not None or announced is not None:
        by = "sha256 pin" if sha256 is not None else "size pin" if size is not None else "content-length"
        return Verified(digest, actual, by)
    if archive:
        read_index(path)
        return Verified(digest, actual, "archive index")
    return None
