"""DVC stage `validate`: fail (exit 1) when a metric leaves its band in reference/<profile>.yaml,
or when a run breaks a claim the reference runs established.

Prints every claim with its margin, then a table of every metric outside its band (or
missing), and a line per broken claim; exits 0 when all bands and established claims hold.
The counts, each claim's margin and the outcome also go to the stage's MLflow run
(``validate/bands/failed``, ``validate/margin/<claim>``, tags ``validate.outcome``, ``validate.claim.<claim>``).
"""

import sys
from pathlib import Path

from soho import report, stage, validate


def selected(params, reference_dir: Path) -> tuple[list, list, int]:
    """The profile's bands and claims of the trained variants, and how many bands were skipped."""
    expected = validate.bands(reference_dir, params.profile)
    if not expected:
        raise SystemExit(f"error: validate: no bands for profile {params.profile!r} in {reference_dir}/")
    expected, skipped = validate.switched_off(expected, params.finetune.variants)
    if skipped:
        names = sorted({band.key.split("/")[1] for band in skipped})
        print(f"validate: skipped {len(skipped)} bands of variants not in finetune.variants: {', '.join(names)}")
    every_claim = validate.claims(reference_dir, params.profile)
    claims = [entry for entry in every_claim if not entry.off(params.finetune.variants)]
    if len(claims) < len(every_claim):
        print(f"validate: skipped {len(every_claim) - len(claims)} claims of variants not in finetune.variants")
    return expected, claims, len(skipped)


def log_outcome(kit, checks: list, claim_checks: list, skipped: int) -> None:
    """Counts, claim margins and the outcome into the stage's MLflow run."""
    failed, broken = sum(not c.ok for c in checks), sum(not c.ok for c in claim_checks)
    bands = {"checked": len(checks), "failed": failed, "skipped": skipped}
    claims = {"checked": len(claim_checks), "broken": broken, "established": sum(c.established for c in claim_checks)}
    margins = {c.claim.name: c.margin for c in claim_checks if c.margin is not None}
    kit.log_metrics("validate", {"bands": bands, "claims": claims, "margin": margins})
    status = {c.claim.name: ("holds" if c.holds else "broken") if c.established else "open" for c in claim_checks}
    kit.set_tags({f"validate.claim.{name}": value for name, value in status.items()})
    kit.set_tags({"validate.outcome": "failed" if failed or broken else "passed"})


def main(params, args) -> None:
    """Check every reference band of the profile against results/*.json."""
    expected, claims, skipped = selected(params, Path(args.reference_dir))
    results = report.load_results(Path(params.paths.results))
    claim_checks = validate.check_claims(results, claims)
    for claim_check in claim_checks:
        print(f"validate: {claim_check.line()}")
    checks = validate.check(results, expected)
    log_outcome(args.kit, checks, claim_checks, skipped)
    failed = [c for c in checks if not c.ok]
    broken = [c for c in claim_checks if not c.ok]
    if failed:
        print(f"validate: {len(failed)} of {len(checks)} metrics outside their band ({params.profile} profile):")
        print(validate.render(checks))
    for claim_check in broken:
        print(f"validate: claim broken: {claim_check.claim.name}: {claim_check.claim.says}")
    if failed or broken:
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
