"""Validation bands (tolerance intervals) and claims."""

import json
import math

import pytest

from soho import bands, validate

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
