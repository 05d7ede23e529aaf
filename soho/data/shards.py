"""WebDataset shards: writing them from raw records, and the loading pipeline.

Why: tar shards stream from local disk or object storage at cluster scale, and
split cleanly over nodes and workers. Writing checks every media file first: a
corrupt or missing file is skipped, counted and reported, and a data set whose
bad fraction passes ``shard.max_bad_fraction`` fails the stage, and a key WebDataset
would not give back (one with a dot, which it splits keys at, or a repeat) fails it too.
All data sets and ``stats.json`` are replaced together, or not at all (:func:`write_all`).
Reading checks every shard against ``index.json`` (:mod:`soho.data.shard_checks`).
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import webdataset as wds
from PIL import Image

from soho.data import video
from soho.data.catalog import DATASETS, ShardSample
from soho.data.integrity import sha256_of
from soho.data.shard_checks import SPLITTERS, ShardCheck, ShardError, Split, check_tail, raise_shard_error
from soho.io import atomic_entries, remove_leftovers, write_text

__all__ = ["ShardError"]  # re-exported: the stage kit and the callers catch it from here

log = logging.getLogger(__name__)
STATS = "stats.json"
IMAGE_EXTENSIONS = {"jpg", "jpeg", "png", "img0.png", "img1.png", "gif"}  # Pillow checks these


@dataclass
class SplitStats:
    samples: int = 0
    bad: int = 0
    bad_files: list[dict[str, str]] = field(default_factory=list)

    @property
    def bad_fraction(self) -> float:
        total = self.samples + self.bad
        return self.bad / total if total else 0.0


def check_media(extension: str, data: bytes) -> None:
    """Raise ``ValueError`` when the bytes are not a decodable image or clip."""
    if not data:
        raise ValueError("empty file")
    if extension in IMAGE_EXTENSIONS:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if getattr(image, "n_frames", 1) < 1:
                raise ValueError("no frames")
    elif extension in video.CONTAINERS:
        video.VideoClip(data, f"a .{extension} file").frames([0])  # PyAV reads it and decodes its first frame


def read_sample(sample: ShardSample) -> dict[str, bytes | str]:
    """The WebDataset dict of a sample; raises ``ValueError``/``OSError`` for bad media."""
    out: dict[str, bytes | str] = {"__key__": sample.key}
    for extension, path in sample.media.items():
        data = Path(path).read_bytes()
        check_media(extension, data)
        out[extension] = data
    out["json"] = json.dumps(sample.meta, sort_keys=True)
    return out


def checked_keys(samples: Iterable[ShardSample], where: str) -> Iterator[ShardSample]:
    """The samples, refusing keys WebDataset would not give back as they are.

    It takes a tar member's key up to the first dot (``COCO.train2014.x.jpg`` loads as key
    ``COCO`` without a ``jpg``), and merges or confuses samples with the same key.
    """
    seen: set[str] = set()
    for sample in samples:
        key, source = sample.key, next(iter(sample.media.values()), "no media")
        bad = next((c for c in "./" if c in key), None)
        if not key or bad:
            why = f"has a {bad!r}, which WebDataset splits keys at" if bad == "." else f"has a {bad!r}"
            raise ShardError(f"{where}: key {key!r} of {source} {why if key else 'is empty'}; rename the file")
        if key in seen:
            raise ShardError(f"{where}: key {key!r} repeats (of {source}); keys must be unique in a split")
        seen.add(key)
        yield sample


def write_split(samples: Iterable[ShardSample], pattern: str, max_per_shard: int) -> tuple[SplitStats, list[str]]:
    """Write one split's samples to ``pattern`` (``...-%06d.tar``); returns stats and shard names.

    The count alone starts a new shard (no size limit), so every shard but the last holds
    ``max_per_shard`` samples: the readers' count checks rely on it.
    """
    stats = SplitStats()
    written: list[str] = []

    def remember(name: str) -> None:
        written.append(Path(name).name)

    with wds.ShardWriter(
        pattern, maxcount=max_per_shard, maxsize=math.inf, verbose=0, post=remember, mtime=0.0
    ) as sink:
        for sample in samples:
            try:
                record = read_sample(sample)
            except (OSError, ValueError) as err:
                stats.bad += 1
                stats.bad_files.append({"key": sample.key, "reason": f"{type(err).__name__}: {err}"})
                log.warning("skipping %s: %s", sample.key, err)
                continue
            sink.write(record)
            stats.samples += 1
    return stats, written


def write_dataset(name: str, raw: Path, out: Path, max_per_shard: int, max_bad_fraction: float) -> dict[str, dict]:
    """Shard every split of one data set into ``out/<name>/`` (a new folder); returns its stats."""
    splits = DATASETS[name](raw)
    result: dict[str, dict] = {}
    folder = Path(out) / name
    folder.mkdir(parents=True)
    index: dict[str, dict] = {}
    for split, samples in sorted(splits.items()):
        keyed = checked_keys(samples, f"{name}/{split}")
        stats, shards = write_split(keyed, str(folder / f"{split}-%06d.tar"), max_per_shard)
        digests = {shard: sha256_of(folder / shard) for shard in shards}  # what a fingerprint of the data reads
        index[split] = {"shards": shards, "samples": stats.samples, "bad": stats.bad_files, "sha256": digests}
        result[split] = {"samples": stats.samples, "bad": stats.bad, "bad_fraction": round(stats.bad_fraction, 6)}
        if stats.bad_fraction > max_bad_fraction:
            examples = "; ".join(f"{b['key']} ({b['reason']})" for b in stats.bad_files[:5])
            raise ShardError(
                f"{name}/{split}: {stats.bad} of {stats.bad + stats.samples} samples are bad "
                f"({stats.bad_fraction:.2%} > shard.max_bad_fraction={max_bad_fraction:.2%}); e.g. {examples}; "
                "no shards were changed"
            )
    write_text(folder / "index.json", json.dumps(index, indent=1, sort_keys=True))
    return result


def write_all(datasets: Iterable[str], raw: Path, out: Path, max_per_shard: int, max_bad_fraction: float) -> dict:
    """Shard all data sets and write ``out/stats.json`` (a DVC metric): all of them, or none.

    Everything is built in one staging folder and swapped in only when every data set passed
    (:func:`soho.io.atomic_entries`), so a failing data set leaves every data set and
    ``stats.json`` as they were. Leftovers of a killed run are removed first, those of the
    per-data-set staging (``.<dataset>.*``) earlier versions used too.
    """
    out = Path(out)
    for name in [*DATASETS, STATS]:
        remove_leftovers(out / name)
    with atomic_entries(out) as staging:
        stats = {name: write_dataset(name, raw, staging, max_per_shard, max_bad_fraction) for name in datasets}
        totals = {
            "samples": sum(s["samples"] for d in stats.values() for s in d.values()),
            "bad": sum(s["bad"] for d in stats.values() for s in d.values()),
        }
        summary = {"datasets": stats, "total": totals}
        write_text(staging / STATS, json.dumps(summary, indent=1, sort_keys=True))
    return summary


def dataset_digest(shards: Path, dataset: str) -> str:
    """The text of ``shards/<dataset>/index.json``: it names every shard with its sha256 and count.

    Why: a resumable stage keeps a finished run whose fingerprint matches; without the data in
    it, a run trained on other shards (re-generated, re-downloaded) would be handed back as new.
    Empty when the data set has no shards yet (nothing can have been trained on them).
    """
    index_path = Path(shards) / dataset / "index.json"
    return index_path.read_text() if index_path.exists() else ""


def shard_urls(shards: Path, dataset: str, split: str) -> list[str]:
    """Paths of the tar shards of one split, from the data set's ``index.json``.

    Each must exist and end as a tar archive does (:func:`check_tail`, 1 KiB read per shard),
    so a cut or overwritten shard fails before any reading, whoever reads it.
    """
    index_path = Path(shards) / dataset / "index.json"
    if not index_path.exists():
        raise ShardError(f"{index_path}: missing; run the shard stage first")
    index = json.loads(index_path.read_text())
    if split not in index:
        raise ShardError(f"{index_path}: no split {split!r} (have {sorted(index)})")
    urls = [str(Path(shards) / dataset / name) for name in index[split]["shards"]]
    for url in urls:
        check_tail(url)
    return urls


def samples(urls: list[str], shuffle: bool = False, seed: int = 0, split: Split = "ranks") -> wds.WebDataset:
    """The undecoded samples of ``urls``, each shard checked as it is read (:class:`ShardCheck`).

    ``split`` (:data:`Split`): who divides the shards. ``shuffle``: the shards' order, seeded.
    """
    splitters = SPLITTERS[split]
    dataset = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if shuffle else False,
        detshuffle=shuffle,
        seed=seed,
        nodesplitter=splitters[0],
        workersplitter=splitters[1],
        handler=raise_shard_error,
        empty_check=False,
    )
    return dataset.compose(ShardCheck(urls, splitters))


def pipeline(
    urls: list[str],
    map_sample: Callable[[dict], dict | None],
    batch_size: int,
    collate: Callable[[list[dict]], dict],
    shuffle: int = 0,
    seed: int = 0,
    partial: bool = True,
    expand: bool = False,
    split: Split = "ranks",
) -> wds.WebDataset:
    """decode -> map (resize/augment/tokenise) -> batch; the shards divided as ``split`` says (:data:`Split`).

    Shuffling (shards, then a sample buffer) is seeded, so an epoch's order is reproducible.
    With ``expand``, ``map_sample`` returns a list (e.g. one entry per VQA question of an image).
    A damaged or short shard is a :class:`ShardError` naming it.
    """
    dataset = samples(urls, shuffle=bool(shuffle), seed=seed, split=split)
    if shuffle:
        dataset = dataset.shuffle(shuffle, seed=seed)
    mapped = dataset.decode(video.decode_member, "pil").map(map_sample)
    if expand:
        mapped = mapped.compose(lambda source: (item for items in source for item in items))
    return mapped.select(lambda s: s is not None).batched(batch_size, collation_fn=collate, partial=partial)
