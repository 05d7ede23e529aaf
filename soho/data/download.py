"""Resumable, verified HTTP downloads and safe archive extraction (the paper profile's data path).

Why: the official archives are tens of GB; a dropped connection must resume with
an HTTP Range request, a corrupted transfer must never be left where a later stage
would trust it, and an archive must not write outside its target folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import lzma
import os
import shutil
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from tqdm import tqdm

log = logging.getLogger(__name__)
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(RuntimeError):
    """A download or extraction failed; the message names the URL or file."""


@dataclass(frozen=True, kw_only=True)
class Source:
    """One manifest entry: where a file comes from and how to check and unpack it.

    Keyword fields only, as the manifest names them: nine fields are too many to pass by position.
    """

    name: str
    url: str
    manual: str | None = None  # instructions when the file cannot be fetched automatically
    filename: str
    sha256: str | None = None
    size: int | None = None
    extract_to: str | None = None
    members: dict[str, str] = field(default_factory=dict)
    place_as: str | None = None  # a plain (non-archive) file: its path under raw/


def load_manifest(path: Path) -> list[Source]:
    """Read a download manifest; unknown or missing fields raise naming the entry."""
    path = Path(path)
    try:
        entries = yaml.safe_load(path.read_text())["sources"]
    except FileNotFoundError:
        raise DownloadError(f"{path}: manifest not found") from None
    except (KeyError, TypeError):
        raise DownloadError(f"{path}: expected a top-level 'sources' list") from None
    sources = []
    for index, entry in enumerate(entries):
        try:
            sources.append(Source(**entry))
        except TypeError as err:
            raise DownloadError(f"{path}: sources[{index}]: {err}") from None
    return sources


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    timeout_s: float = 60.0
    chunk_bytes: int = 1 << 20

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * (2**attempt))


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    policy: RetryPolicy = RetryPolicy(),
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming a ``dest.part`` left by an earlier attempt.

    The file appears at ``dest`` only after its size and sha256 (when given) match;
    on a mismatch the partial file is deleted and :class:`DownloadError` is raised.
    """
    dest = Path(dest)
    if dest.exists() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            _transfer(url, part, size, policy, progress)
            break
        except _Retryable as err:
            if attempt >= policy.retries:
                raise DownloadError(f"{url}: giving up after {attempt + 1} attempts: {err}") from None
            wait = policy.delay(attempt)
            log.warning("%s: %s; retry %d/%d in %.1fs", url, err, attempt + 1, policy.retries, wait)
            time.sleep(wait)
            attempt += 1
    _verify(url, part, sha256, size)
    os.replace(part, dest)
    return dest


class _Retryable(Exception):
    pass


def _transfer(url: str, part: Path, size: int | None, policy: RetryPolicy, progress: bool) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=policy.timeout_s)
    except requests.RequestException as err:
        raise _Retryable(str(err)) from None
    with response:
        if response.status_code == 416 and offset:  # nothing left to fetch: the part is complete
            return
        if response.status_code in RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {response.status_code} {response.reason}")
        if response.status_code not in (200, 206):
            raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason}")
        if response.status_code == 200 and offset:  # server ignored Range: start over
            offset = 0
        total = size or _content_total(response, offset)
        mode = "ab" if offset else "wb"
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress)
        try:
            with open(part, mode) as handle, bar:
                for block in response.iter_content(chunk_size=policy.chunk_bytes):
                    handle.write(block)
                    bar.update(len(block))
        except (requests.RequestException, ConnectionError) as err:
            raise _Retryable(f"interrupted at {part.stat().st_size} bytes: {err}") from None
        expected = _content_total(response, offset)
        if expected is not None and part.stat().st_size < expected:
            raise _Retryable(f"short read: {part.stat().st_size} of {expected} bytes")


def _content_total(response: requests.Response, offset: int) -> int | None:
    if response.status_code == 206 and "/" in response.headers.get("Content-Range", ""):
        total = response.headers["Content-Range"].rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) + (offset if response.status_code == 206 else 0) if length else None


def _verify(url: str, part: Path, sha256: str | None, size: int | None) -> None:
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink()
        raise DownloadError(f"{url}: size mismatch: expected {size} bytes, got {actual_size}; partial file removed")
    if sha256 is not None:
        actual = sha256_of(part)
        if actual != sha256.lower():
            part.unlink()
            raise DownloadError(f"{url}: sha256 mismatch: expected {sha256}, got {actual}; file removed")


def _inside(root: Path, name: str) -> bool:
    target = (root / name).resolve()
    return target == root or root in target.parents


def check_tar_member(member: tarfile.TarInfo, root: Path, archive: Path) -> None:
    name = member.name
    if name.startswith("/") or Path(name).is_absolute():
        raise DownloadError(f"{archive}: refusing absolute path {name!r}")
    if ".." in Path(name).parts or not _inside(root, name):
        raise DownloadError(f"{archive}: refusing path {name!r} that leaves {root}")
    if member.issym() or member.islnk():
        link_base = (root / name).parent if member.issym() else root
        if Path(member.linkname).is_absolute() or not _inside(
            root, str((link_base / member.linkname).relative_to(root))
        ):
            raise DownloadError(f"{archive}: refusing link {name!r} -> {member.linkname!r} that leaves {root}")
    if member.isdev():
        raise DownloadError(f"{archive}: refusing device file {name!r}")


def extract(archive: Path, target: Path, members: dict[str, str] | None = None) -> None:
    """Extract a .tar(.gz/.bz2/.xz) or .zip into ``target``, refusing unsafe paths and links.

    ``members`` maps archive member names to paths under ``target``; when given, only those
    members are extracted (used to place annotation files where the readers look). A cut or
    corrupt archive is a :class:`DownloadError` naming it (:func:`unpack_errors`).
    """
    with unpack_errors(archive):
        _extract(Path(archive), Path(target), members)


@contextlib.contextmanager
def unpack_errors(archive: Path) -> Iterator[None]:
    """Turn what ``tarfile``, ``zipfile`` and the decompressors raise on damaged data into one line.

    Why: they name no file (``EOFError: Compressed file ended before the end-of-stream marker
    was reached``). An ``OSError`` with an errno (a full disk, permissions) is not the archive's
    fault and passes on to the stage kit; bz2 and gzip raise ``OSError`` without one for bad data.
    """
    try:
        yield
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise
        raise DownloadError(
            f"{archive}: cut short or corrupt archive ({type(err).__name__}: {err}); delete it and run the stage again"
        ) from err


def _extract(archive: Path, target: Path, members: dict[str, str] | None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                if (
                    info.filename.startswith("/")
                    or ".." in Path(info.filename).parts
                    or not _inside(root, info.filename)
                ):
                    raise DownloadError(f"{archive}: refusing path {info.filename!r} that leaves {root}")
                if is_link:
                    raise DownloadError(f"{archive}: refusing symbolic link {info.filename!r}")
            for info in zipped.infolist():
                if members and info.filename not in members:
                    continue
                if members:
                    out = root / members[info.filename]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zipped.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                else:
                    zipped.extract(info, root)
        return
    if not tarfile.is_tarfile(archive):
        raise DownloadError(
            f"{archive}: neither a zip nor a tar archive (or cut short); delete it and run the stage again"
        )
    with tarfile.open(archive) as tarred:
        chosen = tarred.getmembers()
        for member in chosen:
            check_tar_member(member, root, archive)
        if members:
            for member in chosen:
                if member.name in members and member.isfile():
                    out = root / members[member.name]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tarred.extractfile(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        else:
            tarred.extractall(root, filter="data")


def fetch_all(sources: list[Source], raw: Path, policy: RetryPolicy, progress: bool = True) -> dict[str, dict]:
    """Download, verify and unpack every source into ``raw``; returns what was fetched (a lock record).

    A source with ``manual`` instructions is not fetched: its file must already be in
    ``raw/_downloads`` (licence forms), otherwise the error repeats the instructions.
    """
    downloads = raw / "_downloads"
    record: dict[str, dict] = {}
    for source in sources:
        dest = downloads / source.filename
        if source.manual and not dest.exists():
            raise DownloadError(
                f"{source.name}: {dest} is missing and cannot be fetched automatically: {source.manual}"
            )
        if not source.manual:
            download(source.url, dest, source.sha256, source.size, policy, progress)
        digest = sha256_of(dest)
        if source.sha256 is None:
            log.warning("%s: no sha256 pinned in the manifest; recorded %s", source.name, digest)
        marker = raw / "_extracted" / f"{source.filename}.{digest[:16]}"
        if source.extract_to is not None and not marker.exists():
            extract(dest, raw / source.extract_to, source.members or None)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        if source.place_as is not None:
            placed = raw / source.place_as
            placed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dest, placed)
        record[source.name] = {"url": source.url, "sha256": digest, "size": dest.stat().st_size}
    return record
