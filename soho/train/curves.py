"""Per-step training curves kept beside the resumable checkpoints.

Why: DVC deletes a stage's non-persistent outputs before running it, so a run that
resumes from (or at) its last checkpoint would otherwise lose the curve of the steps it
does not redo. Rows are appended as they are logged; reading keeps the last row of each
step, so steps re-run after a kill replace the ones logged before it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from soho.io import atomic_file


class CurveLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, step: int, metrics: dict[str, float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            cut = False
            if handle.tell() > 0:  # "a+b" starts at the end
                handle.seek(-1, 2)
                cut = handle.read(1) != b"\n"
            handle.write((("\n" if cut else "") + json.dumps({"step": step, **metrics}) + "\n").encode())

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        by_step: dict[int, dict] = {}
        for line in self.path.read_text().splitlines():
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                by_step[row["step"]] = row
        return [by_step[s] for s in sorted(by_step)]

    def final(self) -> dict[str, float]:
        rows = self.rows()
        return {f"final_{k}": v for k, v in rows[-1].items() if k != "step"} if rows else {}


def write_csv(path: Path, rows: list[dict]) -> None:
    """Curves as CSV (a DVC plot), written atomically."""
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "step", k)) or ["step"]
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
