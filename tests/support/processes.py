"""Python subprocesses for tests: this checkout's ``soho``, and optionally without root's file override.

Why drop capabilities: the tests run as root, and root writes a read-only file anyway. A
child without ``CAP_DAC_OVERRIDE`` meets file permissions the way any other user would.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_override() -> None:
    """In the child before exec: drop the capabilities that let root ignore file permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def as_unprivileged() -> Callable[[], None] | None:
    """A ``preexec_fn`` under which file permissions hold (``None`` when not root: they already do)."""
    return _drop_file_override if os.geteuid() == 0 else None


def python_env(cwd: Path, **extra: str) -> dict[str, str]:
    """The environment of a child running this checkout's ``soho`` offline, ``cwd`` as its home."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd), "HF_HUB_OFFLINE": "1"}
    return env | {"TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"} | extra


def popen_python(code: str, *args: str, cwd: Path, env: dict[str, str], **kwargs) -> subprocess.Popen:
    """``python -c code args...`` in ``cwd``, text mode."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, text=True, **kwargs)
