"""DVC stage `validate`: fail (exit 1) when a metric leaves its band in reference/<profile>.yaml,
or when a run breaks a claim the reference runs established.

Prints every claim with its margin, then a table of every metric outside its band (or
missing), and a line per broken claim; exits 0 when all bands and established claims hold.
"""

import sys
from pathlib import Path

from soho import report, stage, validate


def main(params, args) -> None:
    """Check every reference band of the profile against results/*.json."""
    expected = validate.bands(Path(args.reference_dir), params.profile)
    if not expected:
        raise SystemExit(f"error: validate: no bands for profile {params.profile!r} in {args.reference_dir}/")
    expected, skipped = validate.switched_off(expected, params.finetune.variants)
    if skipped:
        names = sorted({band.key.split("/")[1] for band in skipped})
        print(f"validate: skipped {len(skipped)} bands of variants not in finetune.variants: {', '.join(names)}")
    results = report.load_results(Path(params.paths.results))
    every_claim = validate.claims(Path(args.reference_dir), params.profile)
    claims = [entry for entry in every_claim if not entry.off(params.finetune.variants)]
    if len(claims) < len(every_claim):
        print(f"validate: skipped {len(every_claim) - len(claims)} claims of variants not in finetune.variants")
    claim_checks = validate.check_claims(results, claims)
    for claim_check in claim_checks:
        print(f"validate: {claim_check.line()}")
    checks = validate.check(results, expected)
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
