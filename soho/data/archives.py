"""Safe extraction of the downloaded archives, and reading an archive's whole index.

Why: an archive must not write outside its target folder (``..``, absolute paths, links,
devices), and a truncated or corrupt one must be told apart from an unsafe one: the first
is fetched again (:mod:`soho.data.download`), the second never is. Reading the whole index
(a zip's central directory, every header of a tar stream) is also how a download that no
pin or Content-Length vouches for is known to be complete.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path

# What the zip, tar and compression modules raise on a truncated or damaged file.
# FilterError (a TarError) is a refusal of an unsafe member, not damage: it is caught first.
UNREADABLE = (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, tarfile.TarError, zipfile.BadZipFile)


class ArchiveError(RuntimeError):
    """An archive is unsafe to extract; the message names it and the member."""


class CorruptArchiveError(ArchiveError):
    """An archive is truncated or damaged; ``reason`` says what the reader found."""

    def __init__(self, archive: Path, reason: str):
        reason = " ".join(reason.split())  # one line, whatever the reader said
        super().__init__(f"{archive}: truncated or corrupt archive ({reason})")
        self.archive, self.reason = archive, reason


def _inside(root: Path, name: str) -> bool:
    target = (root / name).resolve()
    return target == root or root in target.parents


def check_tar_member(member: tarfile.TarInfo, root: Path, archive: Path) -> None:
    name = member.name
    if name.startswith("/") or Path(name).is_absolute():
        raise ArchiveError(f"{archive}: refusing absolute path {name!r}")
    if ".." in Path(name).parts or not _inside(root, name):
        raise ArchiveError(f"{archive}: refusing path {name!r} that leaves {root}")
    if member.issym() or member.islnk():
        link_base = (root / name).parent if member.issym() else root
        if Path(member.linkname).is_absolute() or not _inside(
            root, str((link_base / member.linkname).relative_to(root))
        ):
            raise ArchiveError(f"{archive}: refusing link {name!r} -> {member.linkname!r} that leaves {root}")
    if member.isdev():
        raise ArchiveError(f"{archive}: refusing device file {name!r}")


def check_zip_member(info: zipfile.ZipInfo, root: Path, archive: Path) -> None:
    if info.filename.startswith("/") or ".." in Path(info.filename).parts or not _inside(root, info.filename):
        raise ArchiveError(f"{archive}: refusing path {info.filename!r} that leaves {root}")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise ArchiveError(f"{archive}: refusing symbolic link {info.filename!r}")


def read_index(archive: Path) -> int:
    """Read every entry of ``archive``'s index; returns how many. A short or damaged file raises.

    A zip's central directory sits at its very end, and a tar's headers run through the whole
    (decompressed) stream, so either read fails on a file cut anywhere.
    """
    archive = Path(archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                return len(zipped.namelist())
        if not tarfile.is_tarfile(archive):
            raise CorruptArchiveError(archive, "neither a zip nor a tar archive")
        with tarfile.open(archive) as tarred:
            return sum(1 for _ in tarred)
    except UNREADABLE as err:
        raise CorruptArchiveError(archive, f"{type(err).__name__}: {err}") from None


def extract(archive: Path, target: Path, members: dict[str, str] | None = None) -> None:
    """Extract a .tar(.gz/.bz2/.xz) or .zip into ``target``, refusing unsafe paths and links.

    ``members`` maps archive member names to paths under ``target``; when given, only those
    members are extracted (used to place annotation files where the readers look).
    Raises :class:`CorruptArchiveError` for a damaged archive, :class:`ArchiveError` for an unsafe one.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, root, members)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, root, members)
        else:
            raise CorruptArchiveError(archive, "neither a zip nor a tar archive")
    except tarfile.FilterError as err:
        raise ArchiveError(f"{archive}: refusing {err}") from None
    except UNREADABLE as err:
        raise CorruptArchiveError(archive, f"{type(err).__name__}: {err}") from None


def _extract_zip(archive: Path, root: Path, members: dict[str, str] | None) -> None:
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            check_zip_member(info, root, archive)
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


def _extract_tar(archive: Path, root: Path, members: dict[str, str] | None) -> None:
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
