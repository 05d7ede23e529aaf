"""Checked fields of JSON data files: each bad value is one :class:`FormatError` line.

Why: the readers in :mod:`soho.data.formats` take every value they use through these
helpers, so a missing field, a wrong type, a value outside its allowed set or a path that
leaves its data set's folder is an error naming the file, the record and the field
(``dataset_coco.json: images[3]: field 'split' must be one of [...] (got 'holdout')``),
not a ``KeyError`` traceback or a silently wrong record.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Iterator
from pathlib import Path, PurePath
from typing import Any


class FormatError(ValueError):
    """A data file does not follow its format."""


# What ``errors="surrogateescape"`` makes of each byte that is not UTF-8 (valid UTF-8 never decodes to these).
NOT_UTF8 = re.compile("[\udc80-\udcff]")


def decoded(load: Callable[[], Any], where: str) -> Any:
    """``load()``'s JSON value; every way the text can fail to be JSON is a :class:`FormatError` on ``where``.

    Why more than ``JSONDecodeError``: the fuzz test found three others. Bytes that are not
    UTF-8 raise ``UnicodeDecodeError``, an integer of more than 4300 digits (Python's limit)
    a plain ``ValueError``, and deep nesting (``[[[[...``) ``RecursionError``.
    """
    try:
        return load()
    except UnicodeDecodeError as err:
        raise FormatError(f"{where}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except json.JSONDecodeError as err:
        raise FormatError(f"{where}: not valid JSON ({err})") from None
    except ValueError as err:
        raise FormatError(f"{where}: not readable JSON ({str(err).partition(':')[0]})") from None
    except RecursionError:
        raise FormatError(f"{where}: not readable JSON (nested too deeply)") from None


def load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return decoded(lambda: json.load(handle), str(path))
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None


def iter_json_lines(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, where, record) for each non-empty line of a JSON-lines file.

    ``where`` (``file: line 3``) names the line in the errors its fields raise. Bytes that are
    not UTF-8 are read as surrogate escapes and refused on their own line (a strict decoder
    fails a whole chunk at once, before the lines are known).
    """
    try:
        handle = open(path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            if escaped := NOT_UTF8.search(line):
                raise FormatError(f"{where}: not UTF-8 text (byte 0x{ord(escaped[0]) - 0xDC00:02x})")
            record = decoded(lambda line=line: json.loads(line), where)
            if not isinstance(record, dict):
                raise FormatError(f"{where}: expected an object")
            yield number, where, record


def shown(value: Any) -> str:
    """``repr(value)``, cut to 60 characters for an error line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def require(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise FormatError(f"{where}: missing field {key!r}")
    return record[key]


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_int(record: dict[str, Any], key: str, where: str) -> int:
    value = require(record, key, where)
    if not is_int(value):
        raise FormatError(f"{where}: field {key!r} must be an integer (got {shown(value)})")
    return value


def text_value(value: Any, key: str, where: str, *, empty: bool = True) -> str:
    """``value`` (field ``key``) if it is a string (and not empty, unless ``empty``)."""
    if not isinstance(value, str) or not (empty or value):
        raise FormatError(
            f"{where}: field {key!r} must be a {'' if empty else 'non-empty '}string (got {shown(value)})"
        )
    return value


def require_text(record: dict[str, Any], key: str, where: str, *, empty: bool = True) -> str:
    return text_value(require(record, key, where), key, where, empty=empty)


def id_text(value: Any, key: str, where: str) -> str:
    """An id (field ``key``): an integer or a non-empty string, as text."""
    if is_int(value) or (isinstance(value, str) and value):
        return str(value)
    raise FormatError(f"{where}: field {key!r} must be an integer or a string (got {shown(value)})")


def require_choice(
    record: dict[str, Any],
    key: str,
    choices: Collection[Any],
    where: str,
    *,
    expected: str = "",
    fold: Callable[[Any], Any] | None = None,
) -> Any:
    """Field ``key`` (through ``fold`` when given) if it is one of ``choices``; else an error saying what it may be."""
    value = require(record, key, where)
    chosen = fold(value) if fold else value
    try:
        known = chosen in choices
    except TypeError:  # unhashable (a list or an object) against a dict of choices
        known = False
    if not known:
        raise FormatError(
            f"{where}: field {key!r} must be {expected or f'one of {sorted(choices)}'} (got {shown(value)})"
        )
    return chosen


def require_objects(record: dict[str, Any], key: str, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, item) for each item of the list field ``key``, each an object (``file: images[3].sentences[0]``)."""
    items = require(record, key, where)
    if not isinstance(items, list):
        raise FormatError(f"{where}: field {key!r} must be a list (got {shown(items)})")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise FormatError(f"{where}.{key}[{index}]: expected an object (got {shown(item)})")
        yield f"{where}.{key}[{index}]", item


def inside(root: Path, where: str, key: str, *parts: str) -> Path:
    """``root / parts`` if that names something inside ``root``; else an error naming field ``key``.

    Checked on the text (absolute, or ``..`` climbing out), not through symlinks.
    """
    relative = PurePath(*parts)
    if relative.is_absolute() or os.path.normpath(relative).split(os.sep)[0] == "..":
        raise FormatError(f"{where}: field {key!r} leads outside {root} (got {str(relative)!r})")
    return Path(root) / relative


def iter_entries(path: Path, data: Any, key: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, entry) for each entry of a JSON list of objects: the file's top level, or its field ``key``.

    ``where`` (``file: images[3]``, ``file: [3]`` at the top level) names the entry in the
    errors its fields raise.
    """
    entries = data
    if key is not None:
        entries = require(data, key, str(path)) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise FormatError(f"{path}: {'top level' if key is None else f'field {key!r}'} must be a list")
    for index, entry in enumerate(entries):
        where = f"{path}: {key or ''}[{index}]"
        if not isinstance(entry, dict):
            raise FormatError(f"{where}: expected an object (got {shown(entry)})")
        yield where, entry
