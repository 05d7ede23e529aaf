"""DVC stage `validate`: fail (exit 1) when a metric leaves its band in reference/<profile>.yaml,
when a run breaks a claim the reference runs established, or when the bands of the variants
switched off in ``finetune.variants`` were all a task had (it would pass on chance alone).

Prints every claim with its margin, then a table of every metric outside its band (or
missing), and a line per broken claim; exits 0 when all bands and established claims hold.
The counts, each claim's margin and the outcome also go to the stage's MLflow run
(``validate/bands/failed``, ``validate/margin/<claim>``, tags ``validate.outcome``, ``validate.claim.<claim>``).
"""

import sys
from pathlib import Path

from soho import report, stage, validate
from soho.eval import evalai
from soho.tasks import TASKS, finetune_params


def trained_variants(params) -> dict[str, tuple[str, ...]]:
    """Each task's fine-tuned variants: ``finetune.variants``, or its ``finetune.tasks.<task>.variants``."""
    return {task: tuple(finetune_params(params, task).variants) for task in TASKS}


def selected(params, reference_dir: Path, results: dict) -> tuple[list, list, int, list[str]]:
    """The profile's bands and claims of the trained variants, how many bands were skipped, and a
    line per task those skips leave with no band of a trained variant (a failure).

    A server-scored number (VQA test-dev) is a band once its score is in ``paths.server_scores``.
    """
    imported, waiting = validate.server_bands(reference_dir, params.profile, results)
    every_band = validate.bands(reference_dir, params.profile) + imported
    if not every_band:
        raise SystemExit(f"error: validate: no bands for profile {params.profile!r} in {reference_dir}/")
    trained = trained_variants(params)
    expected, skipped = validate.switched_off(every_band, trained)
    unchecked = [
        f"validate: {task}: no band of a trained variant to check (finetune variants of {task}: "
        f"{', '.join(trained.get(task, ()))}; the reference has bands of: {', '.join(variants)})"
        for task, variants in validate.unchecked_tasks(every_band, expected).items()
    ]
    for key, scorer in waiting.items():
        print(
            f"validate: {key} is not checked here: scored by {scorer}; "
            f"import the server's result with scripts/import_evalai.py into {params.paths.server_scores}/"
        )
    for band in imported:
        print(f"validate: {band.key}: the server's score from {params.paths.server_scores}/ is checked")
    for key in validate.server_unbanded(reference_dir, params.profile, results):
        print(f"validate: {key}: a server's score with no paper value and tolerance to check it against")
    if skipped:
        names = sorted({band.key.split("/")[1] for band in skipped})
        print(f"validate: skipped {len(skipped)} bands of variants their task does not fine-tune: {', '.join(names)}")
    every_claim = validate.claims(reference_dir, params.profile)
    claims = [entry for entry in every_claim if not entry.off(trained)]
    if len(claims) < len(every_claim):
        print(f"validate: skipped {len(every_claim) - len(claims)} claims of variants their task does not fine-tune")
    return expected, claims, len(skipped), unchecked


def log_outcome(kit, checks: list, claim_checks: list, skipped: int, unchecked: int = 0) -> None:
    """Counts, claim margins and the outcome into the stage's MLflow run."""
    failed, broken = sum(not c.ok for c in checks), sum(not c.ok for c in claim_checks)
    bands = {"checked": len(checks), "failed": failed, "skipped": skipped, "unchecked_tasks": unchecked}
    claims = {"checked": len(claim_checks), "broken": broken, "established": sum(c.established for c in claim_checks)}
    margins = {c.claim.name: c.margin for c in claim_checks if c.margin is not None}
    kit.log_metrics("validate", {"bands": bands, "claims": claims, "margin": margins})
    status = {c.claim.name: ("holds" if c.holds else "broken") if c.established else "open" for c in claim_checks}
    kit.set_tags({f"validate.claim.{name}": value for name, value in status.items()})
    kit.set_tags({"validate.outcome": "failed" if failed or broken or unchecked else "passed"})


def main(params, args) -> None:
    """Check every reference band of the profile against results/*.json (and server_scores/*.json)."""
    server = Path(params.paths.server_scores) if params.profile == "paper" else None  # EvalAI scores a paper run
    stale = [f"validate: {line}" for line in evalai.stale(server)] if server is not None else []
    results = report.load_results(Path(params.paths.results), None if stale else server)
    expected, claims, skipped, unchecked = selected(params, Path(args.reference_dir), results)
    unchecked += stale
    claim_checks = validate.check_claims(results, claims)
    for claim_check in claim_checks:
        print(f"validate: {claim_check.line()}")
    checks = validate.check(results, expected)
    log_outcome(args.kit, checks, claim_checks, skipped, len(unchecked))
    failed = [c for c in checks if not c.ok]
    broken = [c for c in claim_checks if not c.ok]
    if failed:
        print(f"validate: {len(failed)} of {len(checks)} metrics outside their band ({params.profile} profile):")
        print(validate.render(checks))
    for claim_check in broken:
        print(f"validate: claim broken: {claim_check.claim.name}: {claim_check.claim.says}")
    for line in unchecked:
        print(line)
    if failed or broken or unchecked:
        raise SystemExit(1)
    established = sum(c.established for c in claim_checks)
    print(
        f"validate: all {len(checks)} metrics inside their band and all {established} established claims hold "
        f"({len(claim_checks) - established} open) ({params.profile} profile)"
    )


def add_args(parser) -> None:
    parser.add_argument("--reference-dir", default="reference", help="folder with <profile>.yaml")


if __name__ == "__main__":
    sys.exit(stage.run("validate", main, add_args))
