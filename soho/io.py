"""Atomic writes: a file or a directory appears complete or not at all.

Why: a stage killed half-way must never leave a truncated checkpoint, JSON or
data tree that a later stage (or ``dvc repro``) would take for a finished one.

Each output is built in a hidden sibling (``.<name>.<8 random>.tmp`` for a file,
``.<name>.<8 random>`` for a directory) and renamed into place. The siblings are made
with ``os.open``/``os.mkdir`` and modes 0666/0777, so the umask applies as it does to a
plain ``open()`` (``tempfile.mkstemp``/``mkdtemp`` made every output 0600/0700). A kill
leaves its sibling behind; the next write of the same output removes it
(:func:`remove_leftovers`). An ``OSError`` raised while writing names the output when
it named nothing or only the sibling (a full disk raises ``ENOSPC`` with no file name),
so the stage kit can print one line naming it (:mod:`soho.os_errors`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

STAGING = "staging"  # :func:`atomic_entries` stages in ``<folder>/.staging.<8 random>``
RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how safetensors (Rust std::io::Error) words an errno


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and ``os.replace``."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


@contextlib.contextmanager
def _scratch(beside: Path, directory: bool) -> Iterator[Path]:
    """A new temporary sibling of ``beside`` (a killed run's leftovers removed first), deleted unless moved away."""
    beside.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(beside)
    scratch = new_sibling(beside, directory=directory)
    try:
        yield scratch
    finally:
        if directory and scratch.exists():
            shutil.rmtree(scratch)
        elif not directory:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scratch)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    with naming(path), _scratch(path, directory=False) as tmp:
        yield tmp
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling and swap it into place on success."""
    target = Path(target)
    with naming(target), _scratch(target, directory=True) as staging:
        yield staging
        swap_in(staging, target)


@contextlib.contextmanager
def atomic_entries(folder: Path) -> Iterator[Path]:
    """Yield a staging folder in ``folder``; on success each entry made in it replaces its namesake there.

    Why: a stage with several outputs in one folder (``shard``: a tree per data set and
    ``stats.json``) must change all of them or none. Until the body returns, ``folder`` is
    untouched; then each entry is renamed in, trees first and files (a summary of the trees)
    last. A kill during those few renames can leave a mix, which the next run replaces whole.
    Entries of ``folder`` that the body did not make are kept.
    """
    folder = Path(folder)
    with naming(folder), _scratch(folder / STAGING, directory=True) as staging:
        yield staging
        for entry in sorted(staging.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
            swap_in(entry, folder / entry.name)


def swap_in(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; a directory on either side is first moved aside, then deleted."""
    if not (target.exists() and (target.is_dir() or new.is_dir())):
        os.replace(new, target)
        return
    old = new_sibling(target, directory=True, prefix="old.")
    os.replace(target, old / "tree")
    os.replace(new, target)
    shutil.rmtree(old)


def new_sibling(path: Path, directory: bool, prefix: str = "") -> Path:
    """A new hidden sibling of ``path``, made with the umask applied (as ``open()`` and ``mkdir`` do)."""
    while True:
        tail = "" if directory else ".tmp"
        candidate = path.with_name(f".{path.name}.{prefix}{secrets.token_hex(4)}{tail}")
        try:
            if directory:
                os.mkdir(candidate, 0o777)
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return candidate
        except FileExistsError:
            continue


def remove_leftovers(path: Path) -> None:
    """Delete the siblings a killed write of ``path`` left (``.<name>.<8>[.tmp]``, ``.<name>.old.<8>``).

    Also those of ``tempfile.mkstemp``/``mkdtemp``, which earlier versions used (8 characters too).
    """
    base = Path(path).parent / f".{glob.escape(Path(path).name)}."
    for pattern in ("????????.tmp", "????????", "old.????????"):
        for leftover in glob.glob(f"{base}{pattern}"):
            if os.path.isdir(leftover) and not os.path.islink(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """Re-raise an ``OSError`` of a write to ``path`` naming ``path`` when it named no file or our sibling.

    A library that wraps the error (``torch.save``'s ``RuntimeError`` has it as ``__context__``;
    safetensors says ``(os error 28)``) gives it back as that ``OSError``.
    """
    try:
        yield
    except Exception as err:
        found = os_error_behind(err)
        if found is None:
            raise
        mine = f".{Path(path).name}."
        if found.filename is None or Path(str(found.filename)).name.startswith(mine):
            found.filename = str(path)
        if found is err:
            raise
        raise found from err


def os_error_behind(err: BaseException) -> OSError | None:
    """The ``OSError`` (with an errno) that ``err`` is, or that a library wrapped in it, else ``None``.

    Only the wrappers known to hide one are opened: torch's plain ``RuntimeError`` ("unexpected
    pos") raised while the ``OSError`` was handled, and safetensors' error message. Errors of our
    own (``ShardError`` raised from a read error, say) say more than the ``OSError`` and stay.
    """
    if isinstance(err, OSError):
        return err if err.errno is not None else None
    if type(err) is RuntimeError and isinstance(err.__context__, OSError) and err.__context__.errno is not None:
        return err.__context__
    match = RUST_OS_ERROR.search(str(err)) if type(err).__module__.startswith("safetensors") else None
    if match is None:
        return None
    number = int(match.group(1))
    return OSError(number, os.strerror(number))
