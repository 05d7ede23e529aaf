"""Atomic writes (issue 15): modes that honour the umask, leftovers of a kill removed, a full disk named."""

import builtins
import errno
import os
import stat
import tempfile

import pytest
import torch
from safetensors import SafetensorError

from soho import io, os_errors
from soho.train import checkpoint


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_atomic_outputs_get_the_modes_a_plain_open_and_mkdir_give(tmp_path, umask_027):
    io.write_text(tmp_path / "a.json", "{}")
    with io.atomic_file(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"b")
    with io.atomic_directory(tmp_path / "tree") as staging:
        (staging / "c").write_text("c")
    with io.atomic_entries(tmp_path / "folder") as staging:
        (staging / "sub").mkdir()
        io.write_text(staging / "d.json", "{}")
    assert [mode(tmp_path / p) for p in ("a.json", "b.bin", "folder/d.json")] == [0o640] * 3  # 0666 & ~027
    assert [mode(tmp_path / p) for p in ("tree", "folder/sub")] == [0o750] * 2  # 0777 & ~027


def test_the_leftovers_of_a_killed_write_go_at_the_next_write_of_that_output(tmp_path):
    """What a kill leaves (these names, from this module or from tempfile in earlier versions); others stay."""
    leftovers = [
        tempfile.mkstemp(prefix=".a.json.", suffix=".tmp", dir=tmp_path)[1],
        tempfile.mkdtemp(prefix=".tree.", dir=tmp_path),
        tempfile.mkdtemp(prefix=".tree.old.", dir=tmp_path),
        io.new_sibling(tmp_path / "a.json", directory=False),
        io.new_sibling(tmp_path / "tree", directory=True),
    ]
    (tmp_path / ".tree.old.abcd1234" / "tree").mkdir(parents=True)
    others = [tmp_path / ".a.json.keep", tmp_path / ".other.abcd1234", tmp_path / ".tree.abc"]
    for path in others:
        path.write_text("not ours")
    io.write_text(tmp_path / "a.json", "{}")
    with io.atomic_directory(tmp_path / "tree"):
        pass
    assert not [p for p in leftovers if os.path.exists(p)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.json", "tree", *(p.name for p in others)])


def failing_fsync(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_output_and_leaves_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "results" / "pretrain.json"
    io.write_text(target, "old")
    monkeypatch.setattr(os, "fsync", failing_fsync)  # where a full disk shows up with delayed allocation
    with pytest.raises(OSError) as err:
        io.write_text(target, "new")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert target.read_text() == "old" and os.listdir(target.parent) == ["pretrain.json"]
    message = os_errors.describe(err.value)
    assert message == f"{target}: No space left on device (ENOSPC); free some space there and run the stage again"


def test_a_checkpoint_on_a_full_disk_is_the_os_error_naming_it(tmp_path, monkeypatch):
    """torch.save to a path says only "unexpected pos"; through a handle it keeps the OSError (here /dev/full's)."""
    if not (os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)):
        pytest.skip("no /dev/full device")
    real_open = builtins.open
    monkeypatch.setattr(checkpoint, "open", lambda path, mode: real_open("/dev/full", mode), raising=False)
    with pytest.raises(OSError) as err:
        checkpoint.save(tmp_path, 10, torch.nn.Linear(64, 64), {"optimizer": torch.zeros(10_000)})
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "step-00000010")
    assert os.listdir(tmp_path) == []


def test_a_wrapped_os_error_is_found_and_our_own_errors_are_left_alone():
    rust = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert io.os_error_behind(rust).errno == errno.ENOSPC
    from soho.data.shards import ShardError

    try:
        try:
            raise OSError(errno.EACCES, "Permission denied", "x.tar")
        except OSError as read_error:
            raise ShardError("x.tar: unreadable shard (PermissionError: Permission denied)") from read_error
    except ShardError as err:
        assert io.os_error_behind(err) is None  # it says more than the OSError
    assert io.os_error_behind(ValueError("(os error 28)")) is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.EACCES, "Permission denied", "/data/x"), "/data/x: Permission denied (EACCES); give this user"),
        (OSError(errno.EROFS, "Read-only file system", "a", None, "b"), "a -> b: Read-only file system (EROFS); the"),
        (OSError(errno.ENOSPC, "No space left on device"), "(no path reported): No space left on device (ENOSPC)"),
    ],
)
def test_user_caused_os_errors_are_one_line_and_others_are_not_described(error, expected):
    assert os_errors.describe(error).startswith(expected)
    assert os_errors.describe(FileNotFoundError(errno.ENOENT, "No such file", "x")) is None
    assert os_errors.describe(OSError("no errno")) is None
