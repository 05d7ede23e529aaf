"""One line for the file-system errors a user causes: a full disk, permissions, a read-only mount.

Why: these are not bugs, and a traceback through torch or tarfile hides the one thing that
matters, the path. The stage kit (:func:`soho.stage.run`) prints :func:`describe` of such an
``OSError`` and exits 2, as for a bad parameter. Rather than wrapping every write, the atomic
writers (:mod:`soho.io`) make sure the error names the output (a full disk's ``ENOSPC`` names
no file). Any other ``OSError`` is a bug, or is answered where it happens, and stays a traceback.
"""

from __future__ import annotations

import errno

HINTS: dict[int, str] = {
    errno.ENOSPC: "free some space there and run the stage again",
    errno.EDQUOT: "the disk quota is used up; free some space and run the stage again",
    errno.EACCES: "give this user access to it (or its folder), or point paths.* in params.yaml elsewhere",
    errno.EPERM: "give this user access to it (or its folder), or point paths.* in params.yaml elsewhere",
    errno.EROFS: "the file system is mounted read-only; point paths.* in params.yaml elsewhere",
}


def describe(err: OSError) -> str | None:
    """``<path>: <reason> (<ERRNO>); <what to do>`` for an error a user causes, else ``None``."""
    hint = HINTS.get(err.errno) if err.errno is not None else None
    if hint is None:
        return None
    paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    where = f"{paths}: " if paths else "(no path reported): "
    return f"{where}{err.strerror or 'error'} ({errno.errorcode[err.errno]}); {hint}"
