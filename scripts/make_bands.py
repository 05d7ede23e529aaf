"""Derive reference/embedded.yaml (validate's bands and claims) from reference runs of the embedded pipeline.

Usage: python scripts/make_bands.py reference/runs/* --out reference/embedded.yaml
Each run folder holds one run's results/*.json and its run.json (seed, CPU kernel setting),
as scripts/run_matrix.sh leaves them. The rule (soho/bands.py): a two-sided normal tolerance
interval with 99.9% coverage at 95% confidence (k for the number of distinct seeds), never
narrower than a per-metric floor, clipped to the metric's range; a claim (reference/claims.yaml) is established when it held in every
run with a mean margin above twice its standard deviation.
"""

import argparse
import json
import os
from pathlib import Path

import yaml

from soho import bands as band_rule
from soho.config import ConfigError, load_params
from soho.report import HEADLINE, MAIN_ROWS, PRETRAININGS, load_reference, load_results, lookup

BASELINES = ("scratch", "text_only", "chance")  # banded on each task's headline metric
PRETRAIN = ("heldout_itm_acc", "heldout_mlm_acc", "heldout_mvm_acc", "heldout_vd_used_fraction")
PRETRAIN_SCL = ("heldout_itc_acc", "heldout_scl_vision_acc", "heldout_scl_text_acc")  # where the run has them
MIN_RUNS = 5
REPO = Path(__file__).resolve().parents[1]


def keys(results: dict) -> list[str]:
    found = []
    for row_key, (split, metrics) in MAIN_ROWS.items():  # SOHO and SOHO + SCL: every metric of the table
        task = row_key.split(":")[0]
        for variant in ("pretrained", "pretrained_scl"):
            found += [f"{task}/{variant}/{split}/{m}" for m in metrics if m != "consistency" and "median" not in m]
    for task, (split, metric, _) in HEADLINE.items():
        found += [f"{task}/{variant}/{split}/{metric}" for variant in BASELINES]
    found += [f"{run}/{m}" for run, _ in PRETRAININGS for m in PRETRAIN + PRETRAIN_SCL]
    # The ablation rows are not banded: at 30 steps their spread across runs is as large as
    # their differences; `report` marks each row against that spread instead.
    return [k for k in found if lookup(results, k) is not None]


def describe(run_dir: Path) -> dict:
    """A run's seed, kernel setting, CPU and kernel fingerprint from its run.json (scripts/seed_run.sh writes it)."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise SystemExit(f"error: {path}: missing (every reference run records its seed and kernel setting)")
    info = json.loads(path.read_text())
    check_overrides(path, info.get("overrides") or {})
    described = {"seed": info.get("seed"), "kernel": info.get("kernel"), "cpu": info.get("cpu")}
    return described | {"kernel_fingerprint": info["kernel_fingerprint"]} if "kernel_fingerprint" in info else described


def kernel_results(described: list[dict]) -> str:
    """How many distinct floating-point results (scripts/kernels.py fingerprints) the runs cover.

    Why: a kernel setting can change nothing on a CPU (MKL_CBWR=AVX on an AVX-512 EPYC), and bands
    meant to hold on any CPU need runs whose kernels really differed (issue 13).
    """
    known = {run["kernel_fingerprint"] for run in described if "kernel_fingerprint" in run}  # same hash: same results
    unknown = sum("kernel_fingerprint" not in run for run in described)
    return f"{len(known)} distinct among {len(described) - unknown} fingerprinted runs" + (
        f" ({unknown} runs without a fingerprint)" if unknown else ""
    )


def check_overrides(path: Path, overrides: dict[str, str], params_file: Path = REPO / "params.yaml") -> None:
    """Refuse a run made with parameters (``SOHO_*`` from the environment) that params.yaml does not hold.

    Why: a candidate configuration is measured with overrides before params.yaml adopts it
    (scripts/seed_run.sh); its runs may make the bands only once the committed parameters are its own.
    """
    if not overrides:
        return
    saved = {key: os.environ.pop(key) for key in list(os.environ) if key.startswith("SOHO_")}
    try:
        committed = load_params(params_file).model_dump(mode="json")
        os.environ.update(overrides)
        made_with = load_params(params_file).model_dump(mode="json")
    except ConfigError as err:
        raise SystemExit(f"error: {path}: the run's parameter overrides no longer load: {err}") from None
    finally:
        for key in overrides:
            os.environ.pop(key, None)
        os.environ.update(saved)
    if made_with != committed:
        listed = ", ".join(f"{key}={value}" for key, value in sorted(overrides.items()))
        raise SystemExit(f"error: {path}: the run was made with parameters {params_file} does not hold: {listed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--claims", type=Path, default=Path("reference/claims.yaml"))
    parser.add_argument("--out", type=Path, default=Path("reference/embedded.yaml"))
    args = parser.parse_args()
    run_dirs = sorted(path for path in args.runs if path.is_dir())
    if len(run_dirs) < MIN_RUNS:
        raise SystemExit(f"error: bands need at least {MIN_RUNS} runs (seeds x kernel settings), got {len(run_dirs)}")
    runs = {path.name: load_results(path) for path in run_dirs}
    described = [describe(path) for path in run_dirs]
    seeds = {run["seed"] for run in described}
    first = next(iter(runs.values()))
    bands = {}
    for key in keys(first):
        values = {name: lookup(results, key) for name, results in runs.items()}
        if any(v is None for v in values.values()):
            raise SystemExit(f"error: {key} is missing from run(s) {[s for s, v in values.items() if v is None]}")
        fit = band_rule.fit_band(key, list(values.values()), independent=len(seeds))
        bands[key] = {
            "low": fit.low,
            "high": fit.high,
            "runs": {name: round(v, 4) for name, v in values.items()},
            "why": fit.why,
        }
    claims = {}
    spec = load_reference(args.claims).get("claims", {})
    for claim in band_rule.parse_claims(spec, str(args.claims)):
        values = {
            name: {k: lookup(results, k) for k in (claim.better, claim.worse) if k} for name, results in runs.items()
        }
        evidence = band_rule.weigh_claim(claim, values)
        claims[claim.name] = {
            **{k: v for k, v in spec[claim.name].items()},
            "established": evidence.established,
            "held_in": f"{evidence.held} of {len(runs)} runs",
            "margin_mean": None if evidence.mean is None else round(evidence.mean, 4),
            "margin_sd": None if evidence.sd is None else round(evidence.sd, 4),
            "margins": {name: None if m is None else round(m, 4) for name, m in evidence.margins.items()},
        }
    header = (
        "# Bands and claims for `validate` on the embedded profile: generated by scripts/make_bands.py\n"
        f"# from {len(runs)} reference runs (seeds x CPU kernel settings, reference/runs/) by the rule in\n"
        "# soho/bands.py. Each entry keeps the runs' values. Do not edit by hand: re-run the matrix\n"
        "# (scripts/run_matrix.sh) and this script.\n"
    )
    document = {
        "rule": {
            "band": "mean ± max(k·sd, floor), clipped to the metric's range; k: Howe's two-sided normal "
            "tolerance factor",
            "coverage": band_rule.COVERAGE,
            "confidence": band_rule.CONFIDENCE,
            "k": round(band_rule.tolerance_factor(len(seeds)), 4),
            "k_from": f"{len(seeds)} distinct seeds among {len(runs)} runs",
            "claim_established": f"held in every run and mean margin > {band_rule.SIGNIFICANCE} sd",
        },
        "kernel_results": kernel_results(described),
        "runs": dict(zip(runs, described, strict=True)),
        "bands": bands,
        "claims": claims,
    }
    args.out.write_text(header + yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True))
    established = sum(c["established"] for c in claims.values())
    vacuous = [key for key, band in bands.items() if (band["low"], band["high"]) == band_rule.bounds(key)]
    print(
        f"wrote {len(bands)} bands and {len(claims)} claims ({established} established) to {args.out}, "
        f"from {len(runs)} runs of {len(seeds)} seeds; {len(vacuous)} bands span the metric's whole range "
        "(they check only that the metric exists)"
    )
    print(f"kernel results: {document['kernel_results']} (scripts/kernels.py; 2 or more: bands that hold across CPUs)")


if __name__ == "__main__":
    main()
