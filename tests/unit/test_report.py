"""The results table, the validation against reference bands, and ablation parameters."""

import copy
import json
import re

import pytest

from soho import ablations, paper_numbers, report, validate
from soho.config import ConfigError, load_params, with_overrides

from ..conftest import REPO

RESULTS = {
    "retrieval_coco": {
        "pretrained": {"test": {"tr_r1": 40.0, "r_mean": 50.0}},
        "chance": {"test": {"tr_r1": 2.0, "r_mean": 12.2}},
    },
    "snli_ve": {
        "pretrained": {"dev": {"accuracy": 80.0}, "test": {"accuracy": 81.0}},
        "scratch": {"dev": {"accuracy": 60.0}, "test": {"accuracy": 61.5}},
    },
    "ablations": {"default": {"heldout_itm_acc": 0.6}, "no_vd": {"heldout_itm_acc": 0.55}},
}
REFERENCE = {
    "papers": {"soho": {"title": "SOHO", "venue": "CVPR 2021", "arxiv": "2104.03135"}},
    "tasks_not_in_paper": {"soho": ["retrieval_msrvtt"]},
    "metrics": {
        "retrieval_coco/pretrained/test/tr_r1": {
            "soho": {"value": 66.4, "status": "unverified", "source": "recalled"},
            "scl": {"value": None, "missing": "not transcribed", "source": "no copy"},
            "tolerance": 3.0,
        },
        "retrieval_coco/pretrained/test/r_mean": {
            "soho": {"value": None, "missing": "not reported by the paper", "source": "SOHO Table 2"},
        },
        "snli_ve/pretrained/test/accuracy": {
            "soho": {"value": 84.95, "status": "paper", "source": "SOHO Table 6"},
            "scl": {"value": 80.5, "status": "third-party", "source": "a survey's table"},
            "tolerance": 2.0,
        },
    },
}
REPORTED = paper_numbers.parse(REFERENCE, "test reference")
HEADER = {"profile": "embedded", "commit": "abc123", "date": "2026-11-24"}


def test_lookup_walks_task_variant_split_metric():
    assert report.lookup(RESULTS, "snli_ve/scratch/test/accuracy") == 61.5
    assert report.lookup(RESULTS, "snli_ve/text_only/test/accuracy") is None
    assert report.lookup(RESULTS, "snli_ve/scratch/test") is None  # a dict is not a value


def test_table_puts_papers_and_run_side_by_side():
    table = report.build(RESULTS, REPORTED, HEADER)
    row = next(r for r in table["main"] if r["task"] == "retrieval_coco" and r["metric"] == "tr_r1")
    assert (row["soho_paper"], row["scl_paper"], row["this_run"]) == (66.4, None, 40.0)
    assert (row["soho_status"], row["scl_missing"]) == ("unverified", "not transcribed")
    test_row = next(r for r in table["main"] if r["task"] == "snli_ve" and r["split"] == "test")
    assert (test_row["soho_paper"], test_row["this_run"], test_row["soho_status"]) == (84.95, 81.0, "paper")
    labels = [b["label"] for b in table["baselines"]]
    assert labels == ["chance", "no pre-training", "SOHO (pre-trained)"]
    scratch = next(b for b in table["baselines"] if b["variant"] == "scratch")
    assert scratch["values"] == {"COCO R-mean": None, "SNLI-VE test": 61.5}
    assert [a["name"] for a in table["ablations"]] == ["default", "no_vd"]


def test_markdown_shows_each_paper_numbers_status():
    text = report.render_markdown(report.build(RESULTS, REPORTED, HEADER))
    assert "Profile **embedded** · commit `abc123`" in text
    assert "| retrieval_coco | test | tr_r1 | 66.40 (unverified) | n/a (not transcribed) | 40.0 |" in text
    assert "| snli_ve | test | accuracy | 84.95 (paper) | 80.50 (third-party) | 81.0 |" in text
    assert "third-party = read in another paper's or library's table" in text  # the legend
    assert "*" not in text.split("## Downstream")[1].split("## Baselines")[0]  # no bare "not checked" mark
    assert "| no pre-training | n/a | 61.5 |" in text


def test_a_missing_paper_number_gives_its_reason():
    results = copy.deepcopy(RESULTS)
    results["retrieval_msrvtt"] = {"pretrained": {"test": {"ir_r1": 5.0}}}
    text = report.render_markdown(report.build(results, REPORTED, HEADER))
    assert "| retrieval_coco | test | r_mean | n/a (not reported by the paper) | n/a (not transcribed) | 50.0 |" in text
    assert "| retrieval_msrvtt | test | ir_r1 | n/a (task not in the paper) | n/a (not transcribed) | 5.0 |" in text
    rows = [line.split(" | ") for line in text.split("## Baselines")[0].splitlines() if line.startswith("| retrieval")]
    assert rows and all(cell != "n/a" for row in rows for cell in row[3:5])  # every paper cell says why


def test_the_committed_paper_numbers_fill_the_scl_column():
    reported = paper_numbers.load(REPO / "reference" / "paper.yaml")
    results = {
        "vqa": {"pretrained": {"val2014": {"overall": 50.0}}},
        "nlvr2": {"pretrained": {"dev": {"accuracy": 51.0}, "test1": {"accuracy": 52.0}}},
    }
    text = report.render_markdown(report.build(results, reported, HEADER))
    # like with like (issue 16 l): the papers' test-dev beside test-dev (EvalAI's number), a local val2014 beside none
    assert "| vqa | test-dev2015 | overall | 73.25 (third-party) | 78.72 (third-party) | n/a |" in text
    assert "| vqa | val2014 | overall | n/a (not transcribed) | n/a (not transcribed) | 50.0 |" in text
    assert "| nlvr2 | dev | accuracy | 76.37 (third-party) | 83.63 (third-party) | 51.0 |" in text
    assert "| nlvr2 | test1 | accuracy | 77.32 (third-party) | 84.27 (third-party) | 52.0 |" in text
    assert "| vqa | val2014 | yes_no | n/a (not transcribed) | n/a (not transcribed) | n/a |" in text


def _bad(**soho) -> dict:
    bad = copy.deepcopy(REFERENCE)
    bad["metrics"]["snli_ve/pretrained/test/accuracy"]["soho"] = soho
    return bad


@pytest.mark.parametrize(
    ("entry", "names"),
    [
        (_bad(value=84.95, status="checked", source="SOHO Table 6"), "snli_ve/pretrained/test/accuracy.soho.status"),
        (_bad(value=84.95, source="SOHO Table 6"), "snli_ve/pretrained/test/accuracy.soho: a value needs a status"),
        (_bad(value=None, source="SOHO Table 6"), "snli_ve/pretrained/test/accuracy.soho: a null value needs"),
        (_bad(value=84.95, status="paper", source="x", checked=False), "snli_ve/pretrained/test/accuracy.soho.checked"),
    ],
)
def test_a_malformed_paper_yaml_entry_fails_naming_its_key(tmp_path, entry, names):
    (tmp_path / "paper.yaml").write_text(json.dumps(entry))
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'paper.yaml'}: metrics.{names}")):
        validate.bands(tmp_path, "paper")
    with pytest.raises(ConfigError, match=re.escape(f"metrics.{names}")):
        paper_numbers.load(tmp_path / "paper.yaml")


def test_scl_column_and_heldout_table_appear_with_the_scl_run():
    without = report.render_markdown(report.build(RESULTS, REPORTED, HEADER))
    assert "this run +SCL" not in without and "SOHO + SCL" not in without
    results = copy.deepcopy(RESULTS)
    results["snli_ve"]["pretrained_scl"] = {"dev": {"accuracy": 82.0}, "test": {"accuracy": 83.5}}
    results["pretrain"] = {"heldout_itm_acc": 0.7, "heldout_mlm_acc": 0.6, "final_loss": 3.0}
    results["pretrain_scl"] = {"heldout_itm_acc": 0.75, "heldout_scl_text_acc": 0.4}
    table = report.build(results, REPORTED, HEADER)
    assert table["pretrain"]["heldout_itm_acc"] == {"SOHO": 0.7, "SOHO + SCL": 0.75}
    assert table["pretrain"]["heldout_scl_text_acc"] == {"SOHO": None, "SOHO + SCL": 0.4}
    assert "final_loss" not in table["pretrain"]
    text = report.render_markdown(table)
    assert "| task | split | metric | SOHO paper | SCL paper | this run | this run +SCL |" in text
    assert "| snli_ve | test | accuracy | 84.95 (paper) | 80.50 (third-party) | 81.0 | 83.5 |" in text
    assert "| SOHO + SCL (pre-trained) | n/a | 83.5 |" in text
    assert "| heldout_itm_acc | 0.700 | 0.750 |" in text and "| heldout_scl_text_acc | n/a | 0.400 |" in text


def _bands(tmp_path, bands):
    (tmp_path / "embedded.yaml").write_text(json.dumps({"bands": bands}))
    return validate.bands(tmp_path, "embedded")


def test_validate_flags_values_outside_and_missing(tmp_path):
    expected = _bands(
        tmp_path,
        {
            "snli_ve/pretrained/test/accuracy": {"low": 75, "high": 85},
            "snli_ve/scratch/test/accuracy": {"low": 62, "high": 70},
            "vqa/pretrained/val2014/overall": {"low": 0, "high": 100},
        },
    )
    checks = validate.check(RESULTS, expected)
    assert [c.ok for c in checks] == [True, False, False]
    text = validate.render(checks)
    assert re.search(r"snli_ve/scratch/test/accuracy +61.500 +\[62.000, 70.000\] +LOW", text) and "MISSING" in text
    assert "snli_ve/pretrained" not in text  # only failures are listed


def test_paper_profile_bands_come_from_soho_values_and_skip_missing():
    expected = {b.key: b for b in validate.bands(REPO / "reference", "paper")}
    coco = expected["retrieval_coco/pretrained/test/tr_r1"]
    assert (coco.low, coco.high) == pytest.approx((66.4 - 3.0, 66.4 + 3.0))
    assert "retrieval_msrvtt/pretrained/test/ir_r1" not in expected  # SOHO reports no video numbers
    # no local run scores VQA test-dev: listed with who scores it, not failed as missing
    assert "vqa/pretrained/test-dev2015/overall" not in expected
    assert "EvalAI" in validate.server_scored(REPO / "reference", "paper")["vqa/pretrained/test-dev2015/overall"]
    assert validate.server_scored(REPO / "reference", "embedded") == {}
    assert all(not c.ok for c in validate.check(report.load_results(REPO / "results"), list(expected.values())))


def test_ablation_rows_share_the_short_schedule_and_apply_overrides():
    params = load_params(REPO / "params.yaml")
    rows = ablations.rows(params)
    assert next(iter(rows)) == "default" and rows["default"] == {}
    no_vd = ablations.ablation_params(params, "no_vd", rows["no_vd"])
    assert no_vd.model.vd.size == 0 and no_vd.pretrain.optim.steps == params.ablations.steps
    assert params.model.vd.size != 0  # the base parameters are untouched


def test_overrides_name_the_bad_key():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ConfigError, match="(?s)ablations.runs.x.*model.vd.sise"):
        with_overrides(params, {"model.vd.sise": 3}, source="ablations.runs.x")
    with pytest.raises(ConfigError, match="model.vd.size"):
        with_overrides(params, {"model.vd.size": -1})
    assert with_overrides(params, copy.deepcopy({"seed": 3})).seed == 3


def test_video_frames_beyond_the_temporal_embedding_is_a_config_error():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ConfigError, match="finetune.video_frames: 9 exceeds model.vision.max_frames=8"):
        with_overrides(params, {"finetune.video_frames": 9})


def _run(pretrained: float, scratch: float, ablation_itm: float) -> dict:
    return {
        "snli_ve": {"pretrained": {"test": {"accuracy": pretrained}}, "scratch": {"test": {"accuracy": scratch}}},
        "ablations": {"default": {"heldout_itm_acc": 0.5}, "no_vd": {"heldout_itm_acc": ablation_itm}},
    }


def test_differences_and_ablations_carry_their_spread_over_the_reference_runs():
    runs = {"a": _run(80.0, 60.0, 0.50), "b": _run(82.0, 60.0, 0.60), "c": _run(84.0, 60.0, 0.40)}
    table = report.build(RESULTS, REPORTED, HEADER, runs)
    row = next(d for d in table["differences"] if d["label"] == "SOHO − no pre-training")
    cell = row["values"]["SNLI-VE test"]
    assert (cell["mean"], cell["sd"], cell["n"], cell["significant"]) == (22.0, 2.0, 3, True)
    no_vd = next(a for a in table["ablations"] if a["name"] == "no_vd")["vs_default"]["heldout_itm_acc"]
    assert no_vd["mean"] == pytest.approx(0.0) and not no_vd["significant"]
    text = report.render_markdown(table)
    assert "| SOHO − no pre-training | n/a | +22.0 ± 2.0 |" in text
    assert "| no_vd | 0.550 (Δ +0.000 ± 0.100 n.s.) |" in text
    assert "Differences over the 3 reference runs" in text
    assert "Differences over" not in report.render_markdown(report.build(RESULTS, REPORTED, HEADER))
