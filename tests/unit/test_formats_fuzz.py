"""Fuzzing every format reader: whatever a data file holds, the reader returns records that keep
its promises (paths inside the data set's folder, labels from their set, ten VQA answers...)
or raises FormatError, one line that starts with the file's path. Nothing else comes out.

The documents are shaped like each format (its field names, mostly plausible values) so the
fuzzer gets past the first check, with arbitrary JSON anywhere a value goes, and raw bytes
(random, or a valid document with a byte spliced in). Examples are bounded to keep it seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path, PurePath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soho.data import formats
from soho.data.formats import FormatError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BYTES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=12)
names = st.sampled_from(
    [
        "x.jpg",
        "a/b.jpg",
        "../up.jpg",
        "/abs.jpg",
        "a/../../b.jpg",
        "a/./b",
        "",
        ".",
        "..",
        "a\x00b",
        "\ud800",
        "x" * 300,
    ]
) | st.text(max_size=12)
ids = st.integers(-3, 10**6) | names


def maybe(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a value of the field's kind, sometimes any JSON."""
    return st.one_of(plausible, plausible, anything)


def record(**fields: st.SearchStrategy) -> st.SearchStrategy:
    """An object with the format's fields: all of them, some of them, or not an object at all."""
    values = {key: maybe(value) for key, value in fields.items()}
    return st.one_of(
        st.fixed_dictionaries(values),
        st.fixed_dictionaries(values),
        st.fixed_dictionaries({}, optional=values),
        anything,
    )


def listed(item: st.SearchStrategy) -> st.SearchStrategy:
    return maybe(st.lists(item, max_size=3))


def document(key: str, item: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.fixed_dictionaries({key: listed(item)}), anything)


def lines(item: st.SearchStrategy) -> st.SearchStrategy:
    """JSON lines: records, other JSON values, blank lines and text that is not JSON."""
    line = st.one_of(item.map(json.dumps), item.map(json.dumps), anything.map(json.dumps), st.just(""), texts)
    return st.lists(line, max_size=4).map("\n".join)


KARPATHY = document(
    "images",
    record(
        filename=names,
        split=st.sampled_from([*formats.KARPATHY_SPLITS, "holdout"]),
        sentences=listed(record(raw=texts)),
        filepath=names,
        cocoid=ids,
    ),
)
VG = maybe(st.lists(record(id=ids, image_id=ids, regions=listed(record(phrase=texts))), max_size=3))
VQA_QUESTIONS = document("questions", record(question_id=st.integers(0, 4), image_id=st.integers(0, 4), question=texts))
VQA_ANNOTATIONS = document(
    "annotations",
    record(
        question_id=st.integers(0, 4),
        answers=maybe(st.lists(record(answer=texts), min_size=9, max_size=11)),
        answer_type=st.sampled_from([*formats.VQA_ANSWER_TYPES, "bool"]),
        question_type=texts,
        multiple_choice_answer=texts,
    ),
)
NLVR2 = lines(
    record(
        identifier=st.sampled_from(["a-0", "pair-3-1", "-1", "nodash", "../x-0", "/abs-1"]) | texts,
        sentence=texts,
        label=st.sampled_from(["True", "false", True, False, "yes", 1]),
        directory=st.integers(0, 9) | names,
    )
)
SNLI_VE = lines(
    record(gold_label=st.sampled_from([*formats.SNLI_VE_LABELS, "-"]), Flikr30kID=names, sentence2=texts, pairID=ids)
)
MSRVTT = st.one_of(
    st.fixed_dictionaries(
        {
            "videos": listed(record(video_id=names, split=st.sampled_from([*formats.MSRVTT_SPLITS, "val"]))),
            "sentences": listed(record(video_id=names, caption=texts)),
        }
    ),
    anything,
)


@dataclasses.dataclass(frozen=True)
class Reader:
    """A reader, the files it reads (name -> document strategy) and what each record it returns promises."""

    read: Callable[[dict[str, Path], Path], list]
    files: dict[str, st.SearchStrategy]
    kind: type
    holds: Callable[[object], bool] = lambda record: True


def vqa(files: dict[str, Path], _root: Path) -> list:
    return formats.read_vqa(files["questions.json"], files["annotations.json"])


READERS = {
    "karpathy": Reader(
        lambda f, root: formats.read_karpathy(f["dataset_coco.json"], root),
        {"dataset_coco.json": KARPATHY},
        formats.CaptionedImage,
        lambda r: bool(r.captions) and r.split in {"train", "val", "test"},
    ),
    "vg": Reader(
        lambda f, root: formats.read_vg_regions(f["region_descriptions.json"], root),
        {"region_descriptions.json": VG},
        formats.CaptionedImage,
        lambda r: bool(r.captions) and all(r.captions),
    ),
    "vqa": Reader(
        vqa,
        {"questions.json": VQA_QUESTIONS, "annotations.json": st.none() | VQA_ANNOTATIONS},  # None: no file
        formats.VqaQuestion,
        lambda r: isinstance(r.question_id, int) and (r.answers is None or len(r.answers) == formats.VQA_ANSWERS),
    ),
    "nlvr2": Reader(
        lambda f, root: formats.read_nlvr2(f["dev.json"], root),
        {"dev.json": NLVR2},
        formats.Nlvr2Example,
        lambda r: isinstance(r.label, bool),
    ),
    "snli_ve": Reader(
        lambda f, root: formats.read_snli_ve(f["snli_ve_dev.jsonl"], root),
        {"snli_ve_dev.jsonl": SNLI_VE},
        formats.EntailmentExample,
        lambda r: r.label in formats.SNLI_VE_LABELS,
    ),
    "msrvtt": Reader(
        lambda f, root: formats.read_msrvtt(f["MSRVTT_data.json"], root),
        {"MSRVTT_data.json": MSRVTT},
        formats.Video,
        lambda r: r.split in formats.MSRVTT_SPLITS,
    ),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One folder for every example (module-scoped: hypothesis reruns the test body, not the fixture)."""
    return tmp_path_factory.mktemp("fuzz")


def inside(path: Path, root: Path) -> bool:
    """``path`` is under ``root`` and does not climb out of it with ``..``."""
    if not PurePath(path).is_relative_to(root):
        return False
    return os.path.normpath(PurePath(path).relative_to(root)).split(os.sep)[0] != ".."


def read_checked(reader: Reader, workdir: Path, contents: dict[str, bytes | None]) -> str | None:
    """Write ``contents`` (``None``: no such file), read them; assert a valid parse or one FormatError line.

    Returns the error line, or ``None`` for a valid parse.
    """
    root = workdir / "root"
    root.mkdir(exist_ok=True)
    files = {}
    for name, data in contents.items():
        files[name] = workdir / name
        files[name].unlink(missing_ok=True)
        if data is not None:
            files[name].write_bytes(data)
    try:
        records = reader.read(files, root)
    except FormatError as err:
        message = str(err)
        assert "\n" not in message, message
        assert any(message.startswith(f"{path}:") for path in files.values()), message
        return message
    for record in records:
        assert isinstance(record, reader.kind), record
        assert reader.holds(record), record
        for value in dataclasses.astuple(record):
            if isinstance(value, Path):
                assert inside(value, root), record
    return None


def encoded(document) -> bytes | None:
    if document is None or isinstance(document, str):  # None: no file; str: JSON lines already
        return None if document is None else document.encode("utf-8", "surrogatepass")
    return json.dumps(document).encode()


@pytest.mark.parametrize("name", sorted(READERS))
@FUZZ
@given(data=st.data())
def test_a_reader_returns_valid_records_or_one_format_error_line(name, workdir, data):
    reader = READERS[name]
    read_checked(reader, workdir, {file: encoded(data.draw(strategy, file)) for file, strategy in reader.files.items()})


def spliced(document: bytes) -> st.SearchStrategy:
    """``document`` with a few bytes put in at some offset (an invalid UTF-8 byte, a stray brace)."""
    return st.tuples(st.integers(0, len(document)), st.binary(min_size=1, max_size=3), st.booleans()).map(
        lambda cut: document[: cut[0]] + cut[1] + document[cut[0] + cut[2] :]
    )


@pytest.mark.parametrize("name", sorted(READERS))
@BYTES
@given(data=st.data())
def test_a_reader_given_arbitrary_bytes_raises_only_format_errors(name, workdir, data):
    reader = READERS[name]
    contents = {}
    for file, strategy in reader.files.items():
        valid = encoded(data.draw(strategy, file)) or b""
        contents[file] = data.draw(st.one_of(st.binary(max_size=40), spliced(valid)), f"{file} bytes")
    read_checked(reader, workdir, contents)


NESTED = b"[" * 100_000
EDGES = {
    "not UTF-8": b'{"images": [{"filename": "\xff.jpg"}]}\n',
    "nested too deeply": NESTED,
    "nested too deeply inside a record": b'{"images": [{"filename": ' + b"[" * 900 + b"]" * 900 + b"}]}",
    "an integer of 5000 digits": b'{"question_id": ' + b"1" * 5000 + b"}",
    "a name too long for the file system": json.dumps(
        {"videos": [{"video_id": "v" * 300, "split": "train"}], "sentences": []}
    ).encode(),
}


@pytest.mark.parametrize("edge", sorted(EDGES))
@pytest.mark.parametrize("name", sorted(READERS))
def test_edge_cases_found_by_fuzzing_are_format_errors(name, edge, workdir):
    """Each of these leaked another exception from some reader before (UnicodeDecodeError,
    RecursionError, ValueError, OSError)."""
    reader = READERS[name]
    assert read_checked(reader, workdir, dict.fromkeys(reader.files, EDGES[edge])) is not None
