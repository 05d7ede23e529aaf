"""Compare a run's metrics with the bands of ``reference/<profile>.yaml``.

Embedded profile: ``reference/embedded.yaml`` holds a band (low, high) per metric, with the
reference runs' values it was derived from, and the claims (``reference/claims.yaml``) with
the runs' evidence. Paper profile: ``reference/paper.yaml`` (``soho.paper_numbers``) holds
SOHO's reported value and a tolerance; entries without a value are skipped, not failed.
A metric the run did not produce is a failure: a silently missing task must not pass.
Why claims beside bands: a band wide enough to hold every seed and CPU cannot see the table
lose its meaning (pre-training no longer helping); an established claim can, and names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from soho import paper_numbers
from soho.bands import Claim, parse_claims
from soho.config import FINETUNE_VARIANTS
from soho.report import load_reference, lookup

CHANCE = "chance"  # the untrained variant (soho.tasks.evaluation.CHANCE, not imported: it pulls in torch)


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
        reported = paper_numbers.load(Path(reference_dir) / "paper.yaml")
        return [
            Band(key, entry.soho.value - entry.tolerance, entry.soho.value + entry.tolerance, entry.soho.source)
            for key, entry in reported.metrics.items()
            if entry.soho is not None
            and entry.soho.value is not None
            and entry.tolerance is not None
            and entry.scored_by is None
        ]
    reference = load_reference(Path(reference_dir) / f"{profile}.yaml")
    return [
        Band(key, float(entry["low"]), float(entry["high"]), entry.get("why", ""))
        for key, entry in reference.get("bands", {}).items()
    ]


def server_scored(reference_dir: Path, profile: str) -> dict[str, str]:
    """{metric key: who scores it} of the paper numbers no local run can have (VQA test-dev: EvalAI)."""
    if profile != "paper":
        return {}
    reported = paper_numbers.load(Path(reference_dir) / "paper.yaml")
    return {key: entry.scored_by for key, entry in reported.metrics.items() if entry.scored_by is not None}


def server_bands(reference_dir: Path, profile: str, results: Mapping[str, dict]) -> tuple[list[Band], dict[str, str]]:
    """(bands, waiting): each server-scored paper number whose score was imported (``server_scores/``,
    merged into ``results``) is a band like any other; the others, ``{key: who scores it}``, wait."""
    scorers = server_scored(reference_dir, profile)
    if not scorers:
        return [], {}
    reported = paper_numbers.load(Path(reference_dir) / "paper.yaml")
    found, waiting = [], {}
    for key, scorer in scorers.items():
        entry = reported.metrics[key]
        if lookup(results, key) is None:
            waiting[key] = scorer
        elif entry.soho is not None and entry.soho.value is not None and entry.tolerance is not None:
            value, tolerance = entry.soho.value, entry.tolerance
            found.append(Band(key, value - tolerance, value + tolerance, f"{entry.soho.source}; scored by {scorer}"))
    return found, waiting


def server_unbanded(reference_dir: Path, profile: str, results: Mapping[str, dict]) -> list[str]:
    """Server-scored keys with an imported score but no SOHO value and tolerance: reported, not silently dropped."""
    bands, waiting = server_bands(reference_dir, profile, results)
    banded = {band.key for band in bands} | set(waiting)
    return sorted(set(server_scored(reference_dir, profile)) - banded)


def switched_off(expected: list[Band], trained: Mapping[str, tuple[str, ...]]) -> tuple[list[Band], list[Band]]:
    """(kept, skipped): bands on a fine-tuning variant that its task's variants leave out.

    ``trained`` maps each task to the variants it fine-tunes (``finetune.variants``, or its
    ``finetune.tasks.<task>.variants``). Leaving a variant out is a parameter choice, not a
    silently missing result: its bands are skipped (and reported as skipped), every other
    band still has to hold.
    """
    kept, skipped = [], []
    for band in expected:
        (skipped if variant_off(band.key, trained) else kept).append(band)
    return kept, skipped


def variant_off(key: str, trained: Mapping[str, tuple[str, ...]]) -> bool:
    """True when ``key`` (``<task>/<variant>/...``) names a fine-tuning variant its task does not train."""
    parts = key.split("/")
    return len(parts) > 1 and parts[1] in FINETUNE_VARIANTS and parts[1] not in trained.get(parts[0], ())


def _task_variant(key: str) -> tuple[str, str] | None:
    """``(task, variant)`` for a fine-tuning band (``<task>/<variant>/<split>/<metric>``), else None."""
    parts = key.split("/")
    return (parts[0], parts[1]) if len(parts) > 2 and parts[1] in (*FINETUNE_VARIANTS, CHANCE) else None


def unchecked_tasks(expected: list[Band], kept: list[Band]) -> dict[str, list[str]]:
    """Tasks of ``expected`` left with no band of a trained variant in ``kept`` -> the variants of their bands.

    Why: skipping the bands of switched-off variants must not leave a task checked on chance
    alone (``finetune.variants: []`` once passed on the chance bands, 67 bands skipped).
    """
    variants_of: dict[str, set[str]] = {}
    for found in filter(None, map(_task_variant, (band.key for band in expected))):
        variants_of.setdefault(found[0], set()).add(found[1])
    kept_pairs = filter(None, map(_task_variant, (band.key for band in kept)))
    trained = {task for task, variant in kept_pairs if variant != CHANCE}
    return {task: sorted(names) for task, names in variants_of.items() if task not in trained}


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


@dataclass(frozen=True)
class ClaimCheck:
    """One claim against one run: only a claim the reference runs established can fail it."""

    claim: Claim
    established: bool  # by the reference runs: only an established claim can fail a run
    evidence: str
    margin: float | None

    @property
    def holds(self) -> bool:
        return self.claim.holds(self.margin)

    @property
    def ok(self) -> bool:
        return self.holds or not self.established

    def line(self) -> str:
        margin = "missing" if self.margin is None else f"{self.margin:+.3f}"
        if self.established:
            status = "holds" if self.holds else "BROKEN"
        else:
            status = f"open (reference runs: {self.evidence})"
        return f"claim {self.claim.name}: {status}; this run {margin} ({self.claim.says})"


@dataclass(frozen=True)
class ReferenceClaim:
    """A claim as the reference file records it: established or not, and the runs' evidence."""

    claim: Claim
    established: bool
    evidence: str

    def off(self, trained: Mapping[str, tuple[str, ...]]) -> bool:
        """True when the claim compares a fine-tuning variant that its task does not train."""
        return any(variant_off(key, trained) for key in (self.claim.better, self.claim.worse) if key)


def claims(reference_dir: Path, profile: str) -> list[ReferenceClaim]:
    """Every claim in ``reference/<profile>.yaml`` (none for the paper profile)."""
    if profile == "paper":
        return []
    path = Path(reference_dir) / f"{profile}.yaml"
    spec = load_reference(path).get("claims", {}) or {}
    found = []
    for claim in parse_claims(spec, str(path)):
        entry = spec[claim.name]
        mean, sd = entry.get("margin_mean"), entry.get("margin_sd")
        spread = "n/a" if mean is None or sd is None else f"{mean:+.3f} ± {sd:.3f}"
        evidence = f"held in {entry.get('held_in', '?')}, margin {spread}"
        found.append(ReferenceClaim(claim, bool(entry.get("established", False)), evidence))
    return found


def check_claims(results: dict[str, dict], expected: list[ReferenceClaim]) -> list[ClaimCheck]:
    """Each claim's margin in this run's metrics."""
    checks = []
    for entry in expected:
        values = {key: lookup(results, key) for key in (entry.claim.better, entry.claim.worse) if key}
        checks.append(ClaimCheck(entry.claim, entry.established, entry.evidence, entry.claim.margin(values)))
    return checks
