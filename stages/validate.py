"""DVC stage `validate`: fail (exit 1) when a metric leaves its band in reference/<profile>.yaml.

Prints a table of every metric outside its band (or missing); exits 0 when all are inside.
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
    checks = validate.check(report.load_results(Path(params.paths.results)), expected)
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"validate: {len(failed)} of {len(checks)} metrics outside their band ({params.profile} profile):")
        print(validate.render(checks))
        raise SystemExit(1)
    print(f"validate: all {len(checks)} metrics inside their band ({params.profile} profile)")


def add_args(parser) -> None:
    parser.add_argument("--reference-dir", default="reference", help="folder with <profile>.yaml")


if __name__ == "__main__":
    sys.exit(stage.run("validate", main, add_args))
