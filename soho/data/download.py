"""Resumable, verified HTTP downloads of the paper profile's manifest into raw/.

Why: the official archives are tens of GB; a dropped connection must resume with an
HTTP Range request, accepted only from the offset asked for, and a file must never be
trusted until something vouches that it is complete (:mod:`soho.data.integrity`: a pinned
sha256 or size, the server's announced length, or an archive's whole index). A truncated
or corrupt archive is deleted and fetched once more, then fails with one line.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from tqdm import tqdm

from soho.data.archives import ArchiveError, CorruptArchiveError, extract
from soho.data.integrity import Unverified, Verified, forget, record, recorded, sha256_of, vouch

log = logging.getLogger(__name__)
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)")


class DownloadError(RuntimeError):
    """A download or extraction failed; the message names the URL or file."""


@dataclass(frozen=True, kw_only=True)
class Source:
    """One manifest entry: where a file comes from and how to check and unpack it.

    Keyword fields only, as the manifest names them: ten fields are too many to pass by position.
    """

    name: str
    url: str
    manual: str | None = None  # instructions when the file cannot be fetched automatically
    filename: str
    sha256: str | None = None
    size: int | None = None
    pinned_from: str | None = None  # where the pinned sha256/size were published
    extract_to: str | None = None
    members: dict[str, str] = field(default_factory=dict)
    place_as: str | None = None  # a plain (non-archive) file: its path under raw/


def load_manifest(path: Path) -> list[Source]:
    """Read a download manifest; unknown or missing fields and malformed pins raise naming the entry."""
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
            source = Source(**entry)
        except TypeError as err:
            raise DownloadError(f"{path}: sources[{index}]: {err}") from None
        if source.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", source.sha256):
            raise DownloadError(
                f"{path}: sources[{index}] ({source.name}): sha256 {source.sha256!r} is not 64 hex digits"
            )
        if source.size is not None and (not isinstance(source.size, int) or source.size <= 0):
            raise DownloadError(f"{path}: sources[{index}] ({source.name}): size {source.size!r} is not a byte count")
        sources.append(source)
    return sources


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
    archive: bool = False,
) -> Verified:
    """Download ``url`` to ``dest``, resuming a ``dest.part`` left by an earlier attempt.

    The file appears at ``dest`` only once :func:`vouch` finds it complete; otherwise the
    partial file is deleted and :class:`DownloadError` (or, for an ``archive`` that nothing
    else vouches for, :class:`CorruptArchiveError`) is raised. A ``dest`` without a valid
    sidecar is checked again: kept if its pinned sha256 matches, otherwise resumed as a part.
    """
    dest = Path(dest)
    if (known := recorded(dest, sha256, size)) is not None:
        return known
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        if sha256 is not None and sha256_of(dest) == sha256.lower():
            return record(dest, Verified(sha256.lower(), dest.stat().st_size, "sha256 pin"))
        if sha256 is not None:
            dest.unlink()  # damaged, not short: nothing in it to resume
        else:
            os.replace(dest, part)  # the pins, the server's length or the index decide
    dest.parent.mkdir(parents=True, exist_ok=True)
    announced = _transfer_with_retries(url, part, size, policy, progress)
    try:
        verified = vouch(part, sha256, size, announced, archive)
    except Unverified as err:
        part.unlink()
        raise DownloadError(f"{url}: {err}; file removed") from None
    except CorruptArchiveError as err:
        part.unlink()
        raise CorruptArchiveError(dest, err.reason) from None
    if verified is None:
        actual = part.stat().st_size
        part.unlink()
        raise DownloadError(
            f"{url}: cannot tell whether the {actual}-byte download is complete: the server sent no "
            "Content-Length and the manifest pins no size or sha256; file removed"
        )
    os.replace(part, dest)
    return record(dest, verified)


class _Retryable(Exception):
    pass


def _transfer_with_retries(url: str, part: Path, size: int | None, policy: RetryPolicy, progress: bool) -> int | None:
    """:func:`_transfer` with bounded, backed-off retries; returns the file's length when known."""
    attempt = 0
    while True:
        try:
            return _transfer(url, part, size, policy, progress)
        except _Retryable as err:
            if attempt >= policy.retries:
                raise DownloadError(f"{url}: giving up after {attempt + 1} attempts: {err}") from None
            wait = policy.delay(attempt)
            log.warning("%s: %s; retry %d/%d in %.1fs", url, err, attempt + 1, policy.retries, wait)
            time.sleep(wait)
            attempt += 1


def _transfer(url: str, part: Path, size: int | None, policy: RetryPolicy, progress: bool) -> int | None:
    """Fetch the rest of ``part``; returns the whole file's length (pinned, else announced) or ``None``."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset >= size:
        if offset == size:
            return size
        part.unlink()
        offset = 0
    headers = {"Accept-Encoding": "identity"}  # the bytes of the file, as the lengths count them
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=policy.timeout_s)
    except requests.RequestException as err:
        raise _Retryable(str(err)) from None
    with response:
        if response.status_code == 416 and offset:
            _, total = _content_range(response)
            if total == offset:  # nothing left to fetch: the part is the whole file
                return total
            part.unlink()
            raise _Retryable(
                f"HTTP 416 for bytes {offset}- of a file of {total or 'unknown'} bytes: restarting from zero"
            )
        if response.status_code in RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {response.status_code} {response.reason}")
        if response.status_code not in (200, 206):
            raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason}")
        if response.status_code == 206 and (start := _content_range(response)[0]) != offset:
            part.unlink(missing_ok=True)
            answered = "without a Content-Range" if start is None else f"from byte {start}"
            raise _Retryable(f"asked for bytes {offset}-, the server answered {answered}: restarting from zero")
        if response.status_code == 200 and offset:
            log.warning("%s: the server ignored the Range request (HTTP 200): restarting from zero", url)
            offset = 0
        announced = _announced_length(response, offset)
        if size is not None and announced is not None and announced != size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server reports {announced} bytes, the manifest pins {size}")
        total = size if size is not None else announced
        _write_body(response, part, offset, total, policy, progress)
    if total is not None and part.stat().st_size < total:
        raise _Retryable(f"short read: {part.stat().st_size} of {total} bytes")
    return total


def _write_body(
    response: requests.Response, part: Path, offset: int, total: int | None, policy: RetryPolicy, progress: bool
) -> None:
    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress)
    try:
        with open(part, "ab" if offset else "wb") as handle, bar:
            for block in response.iter_content(chunk_size=policy.chunk_bytes):
                handle.write(block)
                bar.update(len(block))
    except (requests.RequestException, ConnectionError) as err:
        raise _Retryable(f"interrupted at {part.stat().st_size} bytes: {err}") from None


def _content_range(response: requests.Response) -> tuple[int | None, int | None]:
    """(first byte, whole length) of a ``Content-Range`` header; ``None`` for what it lacks."""
    match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total.isdigit() else None)


def _announced_length(response: requests.Response, offset: int) -> int | None:
    """The whole file's length as the server states it, or ``None`` when it does not."""
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return None  # the length counts encoded bytes, not the file's
    if response.status_code == 206 and (total := _content_range(response)[1]) is not None:
        return total
    length = response.headers.get("Content-Length", "")
    return int(length) + (offset if response.status_code == 206 else 0) if length.isdigit() else None


def fetch_all(sources: list[Source], raw: Path, policy: RetryPolicy, progress: bool = True) -> dict[str, dict]:
    """Download, verify and unpack every source into ``raw``; returns what was fetched (a lock record).

    A source with ``manual`` instructions is not fetched: its file must already be in
    ``raw/_downloads`` (licence forms), otherwise the error repeats the instructions.
    """
    lock: dict[str, dict] = {}
    for source in sources:
        verified = _fetch_and_unpack(source, raw, policy, progress)
        if source.sha256 is None:
            log.warning(
                "%s: no sha256 pinned in the manifest; %s vouched, recorded %s",
                source.name,
                verified.verified_by,
                verified.sha256,
            )
        lock[source.name] = {"url": source.url, **verified.__dict__}
    return lock


def _fetch_and_unpack(source: Source, raw: Path, policy: RetryPolicy, progress: bool) -> Verified:
    """One source, fetched, verified and unpacked; a damaged archive is deleted and fetched once more."""
    dest = raw / "_downloads" / source.filename
    for attempt in (1, 2):
        try:
            verified = _obtain(source, dest, policy, progress)
            _unpack(source, dest, raw, verified)
            return verified
        except CorruptArchiveError as err:
            if source.manual:
                raise DownloadError(f"{source.name}: {err}; replace it: {source.manual}") from None
            forget(dest)
            if attempt == 2:
                raise DownloadError(f"{source.name}: {err}; deleted after 2 downloads from {source.url}") from None
            log.warning("%s: %s; deleted, downloading it once more", source.name, err)
        except ArchiveError as err:
            raise DownloadError(f"{source.name}: {err}") from None
    raise AssertionError("unreachable")


def _obtain(source: Source, dest: Path, policy: RetryPolicy, progress: bool) -> Verified:
    archive = source.extract_to is not None
    if not source.manual:
        return download(source.url, dest, source.sha256, source.size, policy, progress, archive)
    if not dest.exists():
        raise DownloadError(f"{source.name}: {dest} is missing and cannot be fetched automatically: {source.manual}")
    if (known := recorded(dest, source.sha256, source.size)) is not None:
        return known
    try:
        verified = vouch(dest, source.sha256, source.size, None, archive)
    except Unverified as err:
        raise DownloadError(f"{source.name}: {dest}: {err}; replace it: {source.manual}") from None
    if verified is None:
        raise DownloadError(
            f"{source.name}: {dest}: cannot tell whether it is complete: pin its size or sha256 in the manifest"
        )
    return record(dest, verified)


def _unpack(source: Source, dest: Path, raw: Path, verified: Verified) -> None:
    marker = raw / "_extracted" / f"{source.filename}.{verified.sha256[:16]}"
    if source.extract_to is not None and not marker.exists():
        extract(dest, raw / source.extract_to, source.members or None)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    if source.place_as is not None:
        placed = raw / source.place_as
        placed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dest, placed)
