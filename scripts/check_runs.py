"""Check reference or held-out runs against validate's bands and claims; print the matrix table.

Usage: python scripts/check_runs.py reference/runs/* reference/heldout/* [--reference-dir reference]
Each folder holds one run's results/*.json and run.json (scripts/seed_run.sh writes both).
Prints one Markdown row per run: seed, kernel setting, pass or fail (with the metrics outside
their band and the broken claims), the headline metrics and the run's training time. Exits 1
when any run fails, so a held-out seed that leaves a band is not missed.
"""

import argparse
import json
from pathlib import Path

from soho import report, validate

HEADLINES = {label: f"{task}/pretrained/{split}/{metric}" for task, (split, metric, label) in report.HEADLINE.items()}
HEADLINES["held-out ITM"] = "pretrain/heldout_itm_acc"


def _number(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if key.startswith("pretrain") else f"{value:.1f}"


def check_run(run_dir: Path, reference_dir: Path) -> tuple[bool, list[str]]:
    """(passed, one Markdown row) for one run folder."""
    results = report.load_results(run_dir)
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    failed = [c for c in validate.check(results, validate.bands(reference_dir, "embedded")) if not c.ok]
    broken = [c for c in validate.check_claims(results, validate.claims(reference_dir, "embedded")) if not c.ok]
    passed = not failed and not broken
    verdict = "pass" if passed else "FAIL: " + ", ".join([c.band.key for c in failed] + [c.claim.name for c in broken])
    values = [report.lookup(results, key) for key in HEADLINES.values()]
    cells = [
        run_dir.name,
        str(info.get("seed", "?")),
        str(info.get("kernel", "?")),
        verdict,
        *(_number(key, v) for key, v in zip(HEADLINES.values(), values, strict=True)),
        str(info.get("training_seconds") or "not recorded"),
    ]
    return passed, cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--reference-dir", type=Path, default=Path("reference"))
    args = parser.parse_args()
    head = ["run", "seed", "kernel", "validate", *HEADLINES, "training s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    all_passed = True
    for run_dir in sorted(path for path in args.runs if path.is_dir()):
        passed, cells = check_run(run_dir, args.reference_dir)
        all_passed &= passed
        print("| " + " | ".join(cells) + " |")
    return 0 if all_passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
