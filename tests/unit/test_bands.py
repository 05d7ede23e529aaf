"""Validation bands (tolerance intervals), claims, and the dvc.lock-versus-tree check."""

import json
import math
import subprocess
import sys

import pytest

from soho import bands, validate

from ..conftest import REPO, run_validate_stage

# Independent constants from printed tables: z_{0.9995} and the 5% point of chi-square with 4 d.o.f.
Z_9995, CHI2_05_4 = 3.290527, 0.710723


def test_tolerance_factor_is_howes_formula():
    expected = math.sqrt(4 * (1 + 1 / 5) * Z_9995**2 / CHI2_05_4)  # n = 5, p = 0.999, gamma = 0.95
    assert bands.tolerance_factor(5) == pytest.approx(expected, rel=1e-5)
    # Howe's approximation is within 1% of the exact two-sided factor (6.634 for n=5, p=0.99, 95%).
    assert bands.tolerance_factor(5, coverage=0.99, confidence=0.95) == pytest.approx(6.634, rel=0.01)
    assert bands.tolerance_factor(10) < bands.tolerance_factor(5)  # more runs, narrower bands
    with pytest.raises(ValueError, match="at least 2 runs"):
        bands.tolerance_factor(1)


def test_band_is_mean_plus_minus_k_sd_with_floor_and_range():
    values = [50.0, 52.0, 54.0, 56.0, 58.0]  # mean 54, sd sqrt(10)
    fit = bands.fit_band("vqa/pretrained/val2014/overall", values)
    half = math.sqrt(4 * 1.2 * Z_9995**2 / CHI2_05_4) * math.sqrt(10)
    assert (fit.low, fit.high) == pytest.approx((54 - half, 54 + half), abs=1e-3)
    two_seeds = bands.fit_band("vqa/pretrained/val2014/overall", values, independent=3)
    assert two_seeds.k == pytest.approx(bands.tolerance_factor(3)) and two_seeds.high > fit.high
    same = bands.fit_band("nlvr2/pretrained/test1/accuracy", [60.0] * 5)  # runs that agree by luck
    assert (same.low, same.high) == (50.0, 70.0)  # the 10-point floor (sampling noise of 200 examples)
    clipped = bands.fit_band("pretrain/heldout_itm_acc", [0.5, 0.6, 0.7, 0.8, 0.9])
    assert (clipped.low, clipped.high) == (0.0, 1.0)  # fractions stay fractions
    assert bands.fit_band("retrieval_coco/pretrained/test/tr_r1", [0.0] * 5).low == 0.0


def test_claim_is_established_only_when_it_always_holds_clear_of_its_spread():
    claim = bands.Claim("a_beats_b", "a beats b", better="t/a/s/m", worse="t/b/s/m")
    clear = {f"run{i}": {"t/a/s/m": 60.0 + i, "t/b/s/m": 50.0} for i in range(5)}
    assert bands.weigh_claim(claim, clear).established
    noisy = {f"run{i}": {"t/a/s/m": 50.0 + 10 * (i % 2) + 0.5, "t/b/s/m": 50.0} for i in range(5)}  # margins 0.5 / 10.5
    evidence = bands.weigh_claim(claim, noisy)
    assert evidence.held == 5 and not evidence.established  # mean 6.5 < 2 sd (5.5)
    once_lost = {**clear, "run4": {"t/a/s/m": 49.0, "t/b/s/m": 50.0}}
    assert not bands.weigh_claim(claim, once_lost).established
    tie = bands.Claim("x", "x", better="t/a/s/m", worse="t/b/s/m")
    assert not tie.holds(tie.margin({"t/a/s/m": 50.0, "t/b/s/m": 50.0}))  # a tie is not a win
    threshold = bands.Claim("itm", "itm >= 0.75", better="pretrain/heldout_itm_acc", at_least=0.75)
    assert threshold.holds(threshold.margin({"pretrain/heldout_itm_acc": 0.75}))
    assert not threshold.holds(threshold.margin({}))  # missing is not held


def test_a_malformed_claim_names_itself():
    with pytest.raises(ValueError, match="claims.yaml: claim 'bad' needs exactly one of 'worse' or 'at_least'"):
        bands.parse_claims({"bad": {"says": "x", "better": "a/b"}}, "claims.yaml")


def test_validate_names_each_established_claim_broken_by_copying_scratch_over_pretrained(repo_copy):
    established = [e.claim for e in validate.claims(repo_copy / "reference", "embedded") if e.established]
    against_scratch = [c for c in established if c.worse and "/scratch/" in c.worse]
    assert against_scratch, "the committed reference establishes no claim against the scratch baseline"
    before = run_validate_stage(repo_copy)
    assert before.returncode == 0, before.stdout + before.stderr
    assert all(f"claim {c.name}: holds" in before.stdout for c in established)
    for path in (repo_copy / "results").glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "scratch" in data:
            for variant in ("pretrained", "pretrained_scl"):
                data[variant] = data["scratch"]
            path.write_text(json.dumps(data))
    after = run_validate_stage(repo_copy)
    assert after.returncode == 1
    for claim in against_scratch:
        assert f"validate: claim broken: {claim.name}: {claim.says}" in after.stdout


def test_an_open_claim_is_reported_but_fails_nothing(tmp_path):
    (tmp_path / "embedded.yaml").write_text(
        json.dumps(
            {
                "bands": {},
                "claims": {
                    "c": {"says": "a beats b", "better": "t/a/s/m", "worse": "t/b/s/m", "established": False},
                    "d": {"says": "a beats b", "better": "t/a/s/m", "worse": "t/b/s/m", "established": True},
                },
            }
        )
    )
    results = {"t": {"a": {"s": {"m": 1.0}}, "b": {"s": {"m": 2.0}}}}
    checks = validate.check_claims(results, validate.claims(tmp_path, "embedded"))
    assert [(c.claim.name, c.holds, c.ok) for c in checks] == [("c", False, True), ("d", False, False)]
    assert (
        "open (reference runs: held in ?, margin n/a); this run -1.000" in checks[0].line()
        and "BROKEN" in checks[1].line()
    )


@pytest.mark.slow
def test_lock_check_passes_on_the_committed_tree_and_names_a_changed_dependency(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    check = [sys.executable, str(REPO / "scripts" / "check_lock.py"), str(clone)]
    for ignored in ("soho/models/__pycache__/fusion.cpython-311.pyc", "soho/train/.pytest_cache/x"):
        (clone / ignored).parent.mkdir(parents=True, exist_ok=True)
        (clone / ignored).write_bytes(b"what git ignores is not part of the tree")
    clean = subprocess.run(check, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (clone / "results" / "submissions" / "vqa.json").unlink()  # a committed output, gone
    with (clone / "soho" / "report.py").open("a") as handle:
        handle.write("\n# a change the lock has not seen\n")
    (clone / "params.yaml").write_text((clone / "params.yaml").read_text().replace("seed: 0", "seed: 7"))
    changed = subprocess.run(check, capture_output=True, text=True)
    assert changed.returncode == 1
    assert "report: dep soho/report.py modified" in changed.stdout
    assert "pretrain: parameter params.yaml:seed modified" in changed.stdout
    assert "finetune@vqa: out results/submissions/vqa.json deleted" in changed.stdout


def test_committed_bands_are_what_make_bands_gives_for_the_committed_runs_and_claims(tmp_path):
    out = tmp_path / "embedded.yaml"
    runs = sorted(str(path) for path in (REPO / "reference" / "runs").iterdir() if path.is_dir())
    result = subprocess.run(
        [sys.executable, "scripts/make_bands.py", *runs, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (REPO / "reference" / "embedded.yaml").read_text(), (
        "reference/embedded.yaml is stale: re-run scripts/make_bands.py reference/runs/*"
    )
