"""Checks on every shard read: a damaged or short tar is one :class:`ShardError` line naming it.

Why: a garbage or truncated tar ended pre-training in a ``tarfile.ReadError`` traceback from
a DataLoader worker, and a tar cut at a member boundary was read silently (the held-out set
shrank from 100 to 50 pairs). Each shard a reader takes is now checked as it is read, with
no second pass over the data:

* read errors (garbage, a member cut short, a missing file) name the shard;
* its tail: ``tarfile`` ends an archive with two zero blocks, so a file whose size is not a
  multiple of 512 bytes, or whose last 1 KiB is not zeros, was cut or overwritten;
* its sample count, against the split's total and shard list in ``index.json``. The writer
  fills every shard but the last (``max_samples_per_shard``), so the counts a reader sees must
  fit that: its full shards hold one number ``m`` with ``(n - 1) m < total <= n m`` and the last
  one ``total - (n - 1) m``. A reader that takes every shard of a split (one process without
  DataLoader workers, as the embedded profile runs) so checks each shard's exact count; a
  DataLoader worker or DDP rank checks its shards against each other and the total.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import webdataset as wds

TAR_BLOCK = 512
WORKER_MESSAGE = re.compile(r"Caught \w+ in (DataLoader worker process \d+)\.\nOriginal Traceback")
RESHARD = "re-run the shard stage"


class ShardError(RuntimeError):
    """Too many bad samples, shards that cannot be found, or a damaged or short shard.

    Raised in a DataLoader worker, torch re-raises it in the main process with the worker's
    traceback as its message; that message is cut back to the original line (naming the worker).
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(one_line(message))


def one_line(message: str) -> str:
    """``message``, or for torch's wrapped worker message its last line and the worker."""
    worker = WORKER_MESSAGE.match(message)
    if worker is None:
        return message
    last = message.rstrip().splitlines()[-1]
    return f"{last.split(': ', 1)[-1]} ({worker.group(1)})"


@dataclass(frozen=True)
class SplitIndex:
    """What ``index.json`` says of one split: its shards (as urls, in order) and sample total."""

    index: Path
    split: str
    urls: tuple[str, ...]
    samples: int

    def describe(self) -> str:
        shards = f"{len(self.urls)} shard{'s' if len(self.urls) != 1 else ''}"
        return f"its index.json counts {self.samples} in {self.split!r} ({shards})"


def local_path(url: str) -> Path | None:
    parsed = urlparse(url)
    return Path(parsed.path) if parsed.scheme in ("", "file") else None


def splits_of(urls: Iterable[str]) -> dict[str, SplitIndex]:
    """{url: its split} for the urls that lie next to an ``index.json`` listing them."""
    found: dict[str, SplitIndex] = {}
    indexes: dict[Path, dict] = {}
    for url in urls:
        path = local_path(url)
        if path is None or url in found:
            continue
        index_path = path.parent / "index.json"
        if index_path not in indexes:
            indexes[index_path] = json.loads(index_path.read_text()) if index_path.exists() else {}
        for split, entry in indexes[index_path].items():
            if path.name in entry["shards"]:
                split_urls = tuple(str(path.parent / name) for name in entry["shards"])
                found[url] = SplitIndex(index_path, split, split_urls, entry["samples"])
    return found


def check_tail(url: str) -> None:
    """A local ``.tar`` must exist and end in the two zero blocks ``tarfile`` closes an archive with."""
    path = local_path(url)
    if path is None or path.suffix != ".tar":
        return
    if not path.exists():
        raise ShardError(f"{url}: missing, though its index.json lists it; {RESHARD}")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 2 * TAR_BLOCK))
        tail = handle.read()
    if size % TAR_BLOCK or size < 2 * TAR_BLOCK or tail.count(0) != len(tail):
        raise ShardError(f"{url}: cut short or overwritten ({size} bytes, not ending as a tar archive); {RESHARD}")


def count_problem(split: SplitIndex, counts: dict[str, int]) -> tuple[str, str] | None:
    """(url, why) for the first shard whose count cannot be right, from the counts of some of its shards."""
    total, n, last = split.samples, len(split.urls), split.urls[-1]
    if n == 1:
        return (last, split.describe()) if counts.get(last, total) != total else None
    full = [(counts[u], u) for u in split.urls[:-1] if u in counts]
    if full:
        m, widest = max(full)
        short = [(c, u) for c, u in full if c < m]
        if short:
            return short[0][1], f"where the split's other full shards hold {m}; {split.describe()}"
        if total > n * m:
            return widest, f"too few for a full shard; {split.describe()}"
        if total <= (n - 1) * m:
            return widest, f"too many for a full shard; {split.describe()}"
        if last in counts and counts[last] != total - (n - 1) * m:
            why = f"where {total - (n - 1) * m} are left for the last shard"
            rest = total - counts[last]
            if len(full) == 1 and rest % (n - 1) == 0 and counts[last] <= rest // (n - 1) != m:
                why += f", unless {Path(widest).name} (holding {m}) is the short one"  # one full shard read
            return last, f"{why}; {split.describe()}"
    elif last in counts:
        rest = total - counts[last]
        if counts[last] < 1 or rest % (n - 1) or rest // (n - 1) < counts[last]:
            return last, f"which no last shard can hold; {split.describe()}"
    return None


Split = Literal["ranks", "workers", "none"]
"""Who divides a split's shards between readers.

``ranks`` (training): each DDP rank, then each of its DataLoader workers, reads its own part.
``workers``: every rank reads them all and only its workers divide them; evaluation, which one
rank does, must see the whole split under torchrun. ``none``: this reader takes them all (the
VQA answer vocabulary, counted in every process).
"""
SPLITTERS: dict[str, tuple[Callable | None, Callable | None]] = {
    "ranks": (wds.split_by_node, wds.split_by_worker),
    "workers": (None, wds.split_by_worker),
    "none": (None, None),
}


class ShardCheck:
    """A stage after ``wds.WebDataset``: passes its samples through unchanged, checking each shard read.

    ``splitters``: the (node, worker) splitters the reader was built with (:data:`SPLITTERS`).
    """

    def __init__(self, urls: Iterable[str], splitters: tuple[Callable | None, Callable | None]) -> None:
        self.urls = list(urls)
        self.splitters = splitters
        self.splits = splits_of(self.urls)

    def assigned(self) -> list[str]:
        """The urls this reader (DDP rank, DataLoader worker) takes, as the WebDataset splitters pick them."""
        urls: Iterable[str] = iter(self.urls)
        for splitter in self.splitters:
            urls = splitter(urls) if splitter is not None else urls
        return list(urls)

    def finished(self, url: str, counts: dict[str, int]) -> None:
        split = self.splits.get(url)
        if split is None:
            return
        problem = count_problem(split, {u: counts[u] for u in split.urls if u in counts})
        if problem is not None:
            bad, why = problem
            raise ShardError(f"{bad}: holds {counts[bad]} samples, {why}; the shard is short or damaged: {RESHARD}")

    def __call__(self, source: Iterable[dict]) -> Iterator[dict]:
        counts: dict[str, int] = {}
        current = None
        for sample in source:
            url = sample.get("__url__")
            if url != current:
                if current is not None:
                    self.finished(current, counts)
                current = url
                check_tail(url)
                counts[url] = 0
            counts[url] += 1
            yield sample
        if current is not None:
            self.finished(current, counts)
        for url in self.assigned():  # shards that yielded no sample at all
            if url not in counts:
                check_tail(url)
                counts[url] = 0
                self.finished(url, counts)


def raise_shard_error(exn: Exception) -> bool:
    """WebDataset's exception handler: a read error becomes a :class:`ShardError` naming the shard.

    WebDataset appends ``(stream, url)`` to the arguments of an error reading a tar, and the
    opener's ``FileNotFoundError`` names the file; anything else is raised as it is.
    """
    args = exn.args
    url = args[-1] if len(args) >= 2 and isinstance(args[-1], str) and hasattr(args[-2], "read") else None
    url = url or getattr(exn, "filename", None)
    if url is None or isinstance(exn, ShardError):
        raise exn
    reason = exn.strerror if isinstance(exn, OSError) and exn.strerror else str(args[0]).split(" @ <", 1)[0]
    raise ShardError(f"{url}: unreadable shard ({type(exn).__name__}: {reason}); {RESHARD}") from exn
