"""Compare a run's metrics with the bands of ``reference/<profile>.yaml``.

Embedded profile: ``reference/embedded.yaml`` holds a band (low, high) per metric, with the
per-seed values it was derived from. Paper profile: ``reference/paper.yaml`` holds SOHO's
reported value and a tolerance; entries without a value are skipped, not failed.
A metric the run did not produce is a failure: a silently missing task must not pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from soho.config import FINETUNE_VARIANTS
from soho.report import load_reference, lookup


@dataclass(frozen=True)
class Band:
    key: str
    low: float
    high: float
    source: str


@dataclass(frozen=True)
class Check:
    band: Band
    value: float | None

    @property
    def ok(self) -> bool:
        return self.value is not None and self.band.low <= self.value <= self.band.high


def bands(reference_dir: Path, profile: str) -> list[Band]:
    """The bands a run of ``profile`` must stay within."""
    if profile == "paper":
        reference = load_reference(Path(reference_dir) / "paper.yaml")
        found = []
        for key, entry in reference.get("metrics", {}).items():
            soho = entry.get("soho") or {}
            if soho.get("value") is None:
                continue
            tolerance = float(entry.get("tolerance", 0.0))
            value = float(soho["value"])
            found.append(Band(key, value - tolerance, value + tolerance, soho.get("source", "")))
        return found
    reference = load_reference(Path(reference_dir) / f"{profile}.yaml")
    return [
        Band(key, float(entry["low"]), float(entry["high"]), entry.get("why", ""))
        for key, entry in reference.get("bands", {}).items()
    ]


def switched_off(expected: list[Band], variants: tuple[str, ...]) -> tuple[list[Band], list[Band]]:
    """(kept, skipped): bands on a fine-tuning variant that ``finetune.variants`` leaves out.

    Leaving a variant out is a parameter choice, not a silently missing result: its bands are
    skipped (and reported as skipped), every other band still has to hold.
    """
    kept, skipped = [], []
    for band in expected:
        parts = band.key.split("/")
        off = len(parts) > 1 and parts[1] in FINETUNE_VARIANTS and parts[1] not in variants
        (skipped if off else kept).append(band)
    return kept, skipped


def check(results: dict[str, dict], expected: list[Band]) -> list[Check]:
    return [Check(band, lookup(results, band.key)) for band in expected]


def render(checks: list[Check], only_failures: bool = True) -> str:
    """A fixed-width table of the checks (by default only those outside their band)."""
    shown = [c for c in checks if not (only_failures and c.ok)]
    head = ("metric", "value", "band", "status")
    rows = [
        (
            c.band.key,
            "missing" if c.value is None else f"{c.value:.3f}",
            f"[{c.band.low:.3f}, {c.band.high:.3f}]",
            "ok" if c.ok else ("MISSING" if c.value is None else ("LOW" if c.value < c.band.low else "HIGH")),
        )
        for c in shown
    ]
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in (head, *rows)]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
