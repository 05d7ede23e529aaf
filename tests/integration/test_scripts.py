"""The repo's scripts on the committed tree: check_lock.py, make_bands.py, kernels.py and run_record.py."""

import os
import subprocess
import sys

import pytest

from ..conftest import REPO


def _script(name: str):
    """A module of scripts/ (they are run as files, not installed)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "scripts"))


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
    make_bands = _script("make_bands")
    monkeypatch.setenv("SOHO_FINETUNE__EVAL_BATCH_SIZE", "7")  # the caller's own environment is set aside
    params = REPO / "params.yaml"
    held = make_bands.load_params(params).finetune.retrieval_rerank_k
    make_bands.check_overrides(tmp_path, {"SOHO_FINETUNE__RETRIEVAL_RERANK_K": str(held)}, params)  # what it holds
    with pytest.raises(SystemExit, match=r"made with parameters .*params\.yaml does not hold: SOHO_FINETUNE__RETR"):
        make_bands.check_overrides(tmp_path, {"SOHO_FINETUNE__RETRIEVAL_RERANK_K": str(held + 7)}, params)
    with pytest.raises(SystemExit, match=r"(?s)overrides no longer load: .*SOHO_FINETUNE__RETRIEVAL_RERANK_K"):
        make_bands.check_overrides(tmp_path, {"SOHO_FINETUNE__RETRIEVAL_RERANK_K": "-1"}, params)
    assert os.environ["SOHO_FINETUNE__EVAL_BATCH_SIZE"] == "7" and "SOHO_FINETUNE__RETRIEVAL_RERANK_K" not in os.environ


def test_kernel_exports_select_each_setting_and_refuse_an_unknown_one_by_name():
    """seed_run.sh evals these lines: each setting's variables, exactly; an unknown name lists the known ones."""
    kernels = _script("kernels")
    for kernel, variables in kernels.KERNELS.items():
        done = subprocess.run(
            [sys.executable, "scripts/kernels.py", "exports", kernel], cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "unset ATEN_CPU_CAPABILITY MKL_CBWR OMP_NUM_THREADS ONEDNN_MAX_CPU_ISA",  # the caller's own go first
            *(f"export {k}={v}" for k, v in variables.items()),
        ]
    assert kernels.KERNELS["avx2"] == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run(
        [sys.executable, "scripts/kernels.py", "exports", "avx512"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "unknown KERNEL 'avx512' (native, avx2, avx, one-thread)" in done.stderr


def test_kernel_fingerprint_is_the_same_for_the_same_kernels_and_follows_the_cpu_capability():
    """Two processes with the same settings agree; forcing ATen's scalar kernels changes the float results."""
    kernels = _script("kernels")
    first, again = kernels.compare(["native", "native"])
    assert first["fingerprint"] == again["fingerprint"] and len(first["fingerprint"]) == 16
    if first["torch_cpu_capability"] == "DEFAULT":
        pytest.skip("this CPU's native ATen kernels are already the scalar ones")
    env = {k: v for k, v in os.environ.items() if k not in kernels.KERNEL_VARIABLES}
    env["ATEN_CPU_CAPABILITY"] = "default"  # no vector unit: other exp/softmax/GELU rounding
    done = subprocess.run(
        [sys.executable, "scripts/kernels.py", "fingerprint"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    scalar = __import__("json").loads(done.stdout)
    assert scalar["torch_cpu_capability"] == "DEFAULT"
    assert scalar["fingerprint"] != first["fingerprint"]


def test_kernel_compare_says_which_settings_give_the_native_results(monkeypatch, capsys):
    kernels = _script("kernels")
    rows = [
        {"kernel": k, "fingerprint": f, "torch_cpu_capability": "AVX512", "torch_threads": 2}
        for k, f in (("native", "aaaa"), ("avx2", "bbbb"), ("avx", "aaaa"))
    ]
    monkeypatch.setattr(kernels, "compare", lambda names: rows)
    monkeypatch.setattr(sys, "argv", ["kernels.py", "compare"])
    kernels.main()
    lines = capsys.readouterr().out.splitlines()
    assert [line.endswith("(the same results as native here)") for line in lines] == [False, False, True]


def test_make_bands_counts_the_distinct_kernel_results_of_its_runs():
    """One fingerprint is one set of results (whatever the CPU); runs made before fingerprints existed are counted apart."""
    make_bands = _script("make_bands")
    described = [
        {"cpu": "EPYC", "kernel_fingerprint": "aa"},
        {"cpu": "EPYC", "kernel_fingerprint": "aa"},
        {"cpu": "EPYC", "kernel_fingerprint": "bb"},
        {"cpu": "Xeon", "kernel_fingerprint": "aa"},
        {"cpu": "EPYC"},
    ]
    assert (
        make_bands.kernel_results(described) == "2 distinct among 4 fingerprinted runs (1 runs without a fingerprint)"
    )
    assert make_bands.kernel_results(described[:2]) == "1 distinct among 2 fingerprinted runs"


def test_a_run_records_every_parameter_override_whole_sections_too_and_not_its_own_seed(tmp_path):
    """seed_run.sh's run.json: make_bands refuses a run whose overrides params.yaml does not hold."""
    run_record = _script("run_record")
    environ = {
        "PATH": "/usr/bin",
        "SOHO_SEED": "3",  # seed_run.sh's own: run.json has it as "seed"
        "SOHO_PIPELINE_ID": "abc",  # not a parameter
        "SOHO_FINETUNE": '{"eval_batch_size": 7}',  # a whole section
        "SOHO_FINETUNE__RETRIEVAL_RERANK_K": "3",
    }
    assert run_record.recorded_overrides(environ) == {
        "SOHO_FINETUNE": '{"eval_batch_size": 7}',
        "SOHO_FINETUNE__RETRIEVAL_RERANK_K": "3",
    }
    with pytest.raises(ValueError, match="SOHO_FINETUNE__NO_SUCH_KEY"):
        run_record.recorded_overrides(environ | {"SOHO_FINETUNE__NO_SUCH_KEY": "1"})
    (tmp_path / "f").write_bytes(b"abc")
    assert run_record.sha256(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_variant_rerun_replaces_that_variants_results_alone_and_only_on_the_same_evaluation():
    """seed_run.sh's pretrain_scl rerun: SOHO + SCL's entry is new, the other variants' stand."""
    run_record = _script("run_record")
    recorded = {
        "chance": {"test": {"accuracy": 50.0}},
        "pretrained": {"test": {"accuracy": 70.0}},
        "pretrained_scl": {"test": {"accuracy": 55.0}},
    }
    rerun = {"chance": {"test": {"accuracy": 50.0}}, "pretrained_scl": {"test": {"accuracy": 61.5}}}
    merged = run_record.with_variant(recorded, rerun, "pretrained_scl", "runs/seed0/snli_ve.json")
    assert merged == recorded | {"pretrained_scl": {"test": {"accuracy": 61.5}}}
    assert recorded["pretrained_scl"] == {"test": {"accuracy": 55.0}}  # the recorded results are not edited
    other = rerun | {"chance": {"test": {"accuracy": 49.5}}}  # another evaluation (another seed or split)
    with pytest.raises(SystemExit, match="runs/seed0/snli_ve.json: chance differs"):
        run_record.with_variant(recorded, other, "pretrained_scl", "runs/seed0/snli_ve.json")
    with pytest.raises(SystemExit, match="no 'pretrained_scl' entry"):
        run_record.with_variant(recorded, {"chance": rerun["chance"]}, "pretrained_scl", "snli_ve.json")
