"""The `validate` stage as DVC runs it, on a scratch copy of the repo: bands, claims, a missing reference."""

import json

import yaml

from soho import validate

from ..conftest import run_validate_stage


def test_validate_stage_passes_on_the_committed_results_and_fails_on_a_perturbed_one(repo_copy):
    ok = run_validate_stage(repo_copy)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "inside their band" in ok.stdout
    path = repo_copy / "results" / "snli_ve.json"
    perturbed = json.loads(path.read_text())
    perturbed["pretrained"]["test"]["accuracy"] = -1.0
    path.write_text(json.dumps(perturbed))
    bad = run_validate_stage(repo_copy)
    assert bad.returncode == 1
    assert "snli_ve/pretrained/test/accuracy" in bad.stdout and "LOW" in bad.stdout


def test_validate_skips_only_the_bands_of_a_variant_switched_off_in_params(repo_copy):
    for path in (repo_copy / "results").glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.pop("pretrained_scl", None) is not None:
            path.write_text(json.dumps(data))
    missing = run_validate_stage(repo_copy)
    assert missing.returncode == 1 and "pretrained_scl" in missing.stdout and "MISSING" in missing.stdout
    params = (repo_copy / "params.yaml").read_text()
    (repo_copy / "params.yaml").write_text(
        params.replace("[pretrained, pretrained_scl, scratch, text_only]", "[pretrained, scratch, text_only]")
    )
    off = run_validate_stage(repo_copy)
    assert off.returncode == 0, off.stdout + off.stderr
    assert "skipped" in off.stdout and "pretrained_scl" in off.stdout
    path = repo_copy / "results" / "vqa.json"
    perturbed = json.loads(path.read_text())
    perturbed["pretrained"]["val2014"]["overall"] = 0.0
    path.write_text(json.dumps(perturbed))
    assert run_validate_stage(repo_copy).returncode == 1  # the other bands still hold


def test_a_missing_reference_file_is_a_one_line_error_naming_it(repo_copy):
    (repo_copy / "reference" / "embedded.yaml").unlink()
    result = run_validate_stage(repo_copy)
    assert result.returncode == 2
    assert "reference/embedded.yaml: reference file not found" in result.stderr
    assert "Traceback" not in result.stderr


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


def test_parameters_that_train_no_variant_stop_validate_before_it_checks_chance_alone(repo_copy):
    """Issue 15: ``finetune.variants: []`` skipped every trained variant's band and passed on chance."""
    params = (repo_copy / "params.yaml").read_text()
    (repo_copy / "params.yaml").write_text(params.replace("[pretrained, pretrained_scl, scratch, text_only]", "[]"))
    result = run_validate_stage(repo_copy)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "finetune.variants: Value error, must include 'pretrained'" in result.stderr
    assert "Traceback" not in result.stderr and "inside their band" not in result.stdout


def test_validate_fails_naming_a_task_left_with_no_band_of_a_trained_variant(repo_copy):
    import yaml

    path = repo_copy / "reference" / "embedded.yaml"
    reference = yaml.safe_load(path.read_text())
    for key in [k for k in reference["bands"] if k.startswith(("snli_ve/pretrained/", "snli_ve/pretrained_scl/"))]:
        del reference["bands"][key]
    path.write_text(yaml.safe_dump(reference, sort_keys=False))
    params = (repo_copy / "params.yaml").read_text()
    (repo_copy / "params.yaml").write_text(
        params.replace("[pretrained, pretrained_scl, scratch, text_only]", "[pretrained]")
    )
    result = run_validate_stage(repo_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "validate: snli_ve: no band of a trained variant to check (finetune variants of snli_ve: pretrained; "
        "the reference has bands of: chance, scratch, text_only)"
    ) in result.stdout.splitlines()
    assert "vqa:" not in result.stdout  # the other tasks keep their pretrained bands


def test_validate_skips_the_bands_of_a_variant_one_task_switches_off_in_its_own_parameters(repo_copy):
    """``finetune.tasks.<task>.variants`` drops a variant for that task alone: only its bands are skipped."""
    path = repo_copy / "results" / "vqa.json"
    data = json.loads(path.read_text())
    del data["pretrained_scl"]
    path.write_text(json.dumps(data))
    params_file = repo_copy / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    # merged into what params.yaml already tunes for VQA (its schedule), not beside it as a second key
    params["finetune"]["tasks"].setdefault("vqa", {})["variants"] = ["pretrained", "scratch", "text_only"]
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    result = run_validate_stage(repo_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bands of variants their task does not fine-tune: pretrained_scl" in result.stdout
    other = repo_copy / "results" / "nlvr2.json"
    data = json.loads(other.read_text())
    del data["pretrained_scl"]
    other.write_text(json.dumps(data))
    missing = run_validate_stage(repo_copy)  # NLVR2 still fine-tunes pretrained_scl: its bands are checked
    assert missing.returncode == 1 and "nlvr2/pretrained_scl" in missing.stdout and "MISSING" in missing.stdout


def test_an_imported_evalai_score_is_checked_against_the_papers_test_dev_number(repo_copy):
    """Paper profile: VQA test-dev waits for the server's score, then is a band like any other."""
    from soho.eval import evalai

    key = "vqa/pretrained/test-dev2015/overall"
    result = repo_copy / "evalai.json"
    result.write_text(json.dumps([{"test-dev": {"overall": 73.0}}]))
    evalai.import_result(result, repo_copy / "server_scores")
    embedded = run_validate_stage(repo_copy)  # a paper run's server score is no part of an embedded run
    assert embedded.returncode == 0 and "server_scores" not in embedded.stdout, embedded.stdout
    (repo_copy / "server_scores" / "vqa.json").unlink()
    params = repo_copy / "params.yaml"
    params.write_text(params.read_text().replace("profile: embedded", "profile: paper", 1))
    waiting = run_validate_stage(repo_copy)  # embedded numbers: the paper's bands fail, as they must
    assert waiting.returncode == 1 and f"{key} is not checked here" in waiting.stdout, waiting.stdout
    for overall, inside in ((73.0, True), (60.0, False)):
        result.write_text(json.dumps([{"test-dev": {"overall": overall}}]))
        evalai.import_result(result, repo_copy / "server_scores")
        checked = run_validate_stage(repo_copy)
        assert f"{key}: the server's score from server_scores/ is checked" in checked.stdout, checked.stdout
        assert (key in checked.stdout.split("metrics outside their band")[1]) is not inside, checked.stdout
