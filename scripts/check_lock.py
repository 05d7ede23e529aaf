"""Fail when dvc.lock disagrees with the tree it is committed with.

Usage: python scripts/check_lock.py [REPO]         (exit 1, one line per disagreement)

Why: the committed results/ are worth something only if they came from the committed code and
parameters. dvc.lock records the hash of every dependency a stage ran with; a refactor that
changes a dependency without re-running the pipeline leaves the lock (and the numbers) behind
the code. DVC's own status compares the lock with the working tree; on a fresh clone (as in CI)
that is the committed tree. The data outputs that git ignores (raw/, shards/<dataset>,
checkpoints/) are absent from a clone, or differ on a developer's machine: they are skipped.
Everything else counts: a dependency or committed metrics file that differs from the lock or
is missing, a changed parameter, a changed command, or a stage the lock lacks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from dvc.repo import Repo


def ignored(repo_root: Path, path: str) -> bool:
    """True when git ignores ``path``: a data output, never part of the committed tree."""
    return subprocess.run(["git", "check-ignore", "--quiet", "--", path], cwd=repo_root).returncode == 0


def disagreements(repo_root: Path) -> list[str]:
    """One line per place where dvc.lock and the committed tree disagree."""
    found = []
    with Repo(str(repo_root)) as repo:
        status = repo.status()
    for stage, changes in sorted(status.items()):
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed"
                found.append(f"{stage}: {change}")
                continue
            for kind, entries in change.items():
                for path, state in entries.items():
                    if isinstance(state, dict):  # parameters: {key: "modified" | "new" | "deleted"}
                        found += [f"{stage}: parameter {path}:{key} {how}" for key, how in state.items()]
                    elif not ignored(repo_root, path):
                        found.append(f"{stage}: {kind.removeprefix('changed ')[:-1]} {path} {state}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", type=Path, default=Path("."))
    root = parser.parse_args().repo.resolve()
    os.chdir(root)  # DVC names stages relative to the working directory
    found = disagreements(root)
    if found:
        print(f"check_lock: dvc.lock disagrees with the tree in {len(found)} place(s); run `dvc repro` and commit:")
        print("\n".join(f"  {line}" for line in found))
        return 1
    print("check_lock: dvc.lock matches the committed code, parameters and metrics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
