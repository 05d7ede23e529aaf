"""The repo's scripts on the committed tree: check_lock.py (dvc.lock versus the tree) and make_bands.py."""

import os
import subprocess
import sys

import pytest

from ..conftest import REPO


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


def test_evaluation_cost_counts_every_paper_split_with_coco_retrieval_the_largest():
    """The README's evaluation-time table is this script's output: six splits, pair counts from the code's rule."""
    result = subprocess.run(
        [sys.executable, "scripts/evaluation_cost.py", "--tflops", "100"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in result.stdout.splitlines()[2:]}
    assert len(rows) == 6 and "minutes at 100 TFLOP/s" in result.stdout
    tflops = {name: float(row[4].replace(",", "")) for name, row in rows.items()}
    assert max(tflops, key=tflops.get) == "COCO 5k test"
    assert rows["COCO 5k test"][2] == f"{(25_010 + 5_000) * 128:,}" and rows["MSR-VTT 1k-A test"][3] == "280"
    readme = (REPO / "README.md").read_text()
    assert f"| {rows['COCO 5k test'][4]} | 23.0 |" in readme  # the committed table: 350 TFLOP/s, same counts


def test_make_bands_takes_a_run_made_with_overrides_only_once_params_yaml_holds_them(tmp_path, monkeypatch):
    """A candidate configuration's runs (seed_run.sh with SOHO_* set) make bands only after params.yaml adopts it."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_bands
    finally:
        sys.path.remove(str(REPO / "scripts"))
    monkeypatch.setenv("SOHO_FINETUNE__EVAL_BATCH_SIZE", "7")  # the caller's own environment is set aside
    params = REPO / "params.yaml"
    held = make_bands.load_params(params).finetune.retrieval_rerank_k
    make_bands.check_overrides(tmp_path, {"SOHO_FINETUNE__RETRIEVAL_RERANK_K": str(held)}, params)  # what it holds
    with pytest.raises(SystemExit, match=r"made with parameters .*params\.yaml does not hold: SOHO_FINETUNE__RETR"):
        make_bands.check_overrides(tmp_path, {"SOHO_FINETUNE__RETRIEVAL_RERANK_K": str(held + 7)}, params)
    with pytest.raises(SystemExit, match=r"(?s)overrides no longer load: .*SOHO_FINETUNE__RETRIEVAL_RERANK_K"):
        make_bands.check_overrides(tmp_path, {"SOHO_FINETUNE__RETRIEVAL_RERANK_K": "-1"}, params)
    assert os.environ["SOHO_FINETUNE__EVAL_BATCH_SIZE"] == "7" and "SOHO_FINETUNE__RETRIEVAL_RERANK_K" not in os.environ
