"""The `download` and `shard` stages through DVC, on a tiny copy of the pipeline."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, scratch_folder, tiny_data

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def run(cmd, cwd, check=True):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory, request):
    """A git+DVC project with the repo's stages and code, and tiny data sizes."""
    with scratch_folder(request, tmp_path_factory, "project") as root:
        for name in ("soho", "stages", "profiles", "ablations"):
            shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "dvc.yaml", root)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"] = tiny_data().model_dump(mode="json")
        params["model"]["image_size"] = 64
        params["model"]["text"]["num_layers"] = 1
        params["pretrain"]["eval_samples"] = 4
        params["pretrain"]["optim"].update(steps=3, batch_size=4, checkpoint_every=2, log_every=1, num_workers=0)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        run(["git", "init", "-q"], root)
        run(["dvc", "init", "-q"], root)
        run(["dvc", "config", "core.analytics", "false"], root)
        yield root


def stages_to_run(project):
    """Stages that `dvc status` says are stale; then `dvc repro` them and check all is up to date."""
    import json

    stale = sorted(json.loads(run(["dvc", "status", "--json", "--with-deps", "shard"], project).stdout))
    run(["dvc", "repro", "shard"], project)
    assert json.loads(run(["dvc", "status", "--json", "--with-deps", "shard"], project).stdout) == {}
    return stale


def test_repro_builds_shards_and_second_repro_is_a_no_op(project):
    first = stages_to_run(project)
    assert first == ["download", "shard"]
    assert "Data and pipelines are up to date" in run(["dvc", "repro", "shard"], project).stdout
    stats = yaml.safe_load((project / "shards" / "stats.json").read_text())
    assert stats["datasets"]["coco"]["train"]["samples"] == 12 and stats["total"]["bad"] == 0
    assert (project / "raw" / "vqa" / "v2_mscoco_train2014_annotations.json").exists()
    assert stages_to_run(project) == []
    metrics = run(["dvc", "metrics", "show", "--json"], project).stdout
    assert "total.samples" in metrics or '"samples"' in metrics


def test_changing_a_shard_param_reruns_only_shard(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["shard"]["max_samples_per_shard"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert stages_to_run(project) == ["shard"]
    assert len(list((project / "shards" / "coco").glob("train-*.tar"))) == 4


def test_a_data_set_failing_under_dvc_repro_leaves_every_shard_and_stats_as_they_were(project, tmp_path):
    """DVC deletes a stage's outputs before it runs unless they persist (issue 15)."""
    shards = project / "shards"
    before = {str(p.relative_to(shards)): p.read_bytes() for p in sorted(shards.rglob("*")) if p.is_file()}
    image = next(iter(sorted((project / "raw" / "nlvr2" / "images" / "dev").rglob("*.png"))))
    shutil.copy(image, tmp_path / "intact.png")
    image.write_bytes(b"not an image")
    result = run(["dvc", "repro", "--single-item", "shard"], project, check=False)
    assert result.returncode != 0
    assert "error: shard: nlvr2/dev: 1 of 4 samples are bad" in result.stderr + result.stdout
    after = {str(p.relative_to(shards)): p.read_bytes() for p in sorted(shards.rglob("*")) if p.is_file()}
    assert after == before  # coco, sharded before nlvr2, too; and stats.json
    shutil.copy(tmp_path / "intact.png", image)
    assert stages_to_run(project) == []  # what DVC recorded is still what is there


def test_bad_parameter_fails_before_work_with_the_key(project, tmp_path):
    bad = tmp_path / "params.yaml"
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["coco"]["train"] = -5
    bad.write_text(yaml.safe_dump(params))
    result = run([sys.executable, "stages/download.py", "--params", str(bad)], project, check=False)
    assert result.returncode == 2
    assert "data.coco.train: Input should be greater than 0 (got -5)" in result.stderr
    assert "Traceback" not in result.stderr


def test_pretrain_stage_writes_checkpoint_metrics_and_mlflow_run(project):
    import json

    import mlflow

    run(["dvc", "repro", "pretrain"], project)
    metrics = json.loads((project / "results" / "pretrain.json").read_text())
    for key in ("heldout_mlm_acc", "heldout_mvm_acc", "heldout_itm_acc", "heldout_vd_used_fraction", "final_loss"):
        assert key in metrics
    assert (project / "checkpoints" / "pretrain" / "model.safetensors").stat().st_size > 1_000_000
    curve = (project / "results" / "plots" / "pretrain.csv").read_text().splitlines()
    assert curve[0].startswith("step,") and len(curve) == 4
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "soho-embedded"]
    [logged] = client.search_runs([experiment.experiment_id], "tags.stage = 'pretrain'")
    assert logged.data.tags["stage"] == "pretrain" and logged.data.tags["profile"] == "embedded"
    assert logged.data.params["pretrain.optim.steps"] == "3"
    assert len(client.get_metric_history(logged.info.run_id, "train/loss")) == 3
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"pretrain.json", "pretrain.csv", "checkpoint"} <= artifacts


def test_pretrain_scl_stage_trains_the_same_model_with_scl_on(project):
    import json

    import mlflow
    from safetensors.torch import load_file

    run(["dvc", "repro", "pretrain_scl"], project)
    metrics = json.loads((project / "results" / "pretrain_scl.json").read_text())
    for key in ("heldout_scl_vision_acc", "heldout_scl_text_acc", "heldout_itc_acc", "heldout_itm_acc"):
        assert key in metrics
    assert "heldout_scl_text_acc" not in json.loads((project / "results" / "pretrain.json").read_text())
    soho = load_file(project / "checkpoints" / "pretrain" / "model.safetensors")
    scl = load_file(project / "checkpoints" / "pretrain_scl" / "model.safetensors")
    assert soho.keys() == scl.keys()  # one architecture: fine-tuning loads either
    assert any(not soho[k].equal(scl[k]) for k in soho)
    assert len((project / "results" / "plots" / "pretrain_scl.csv").read_text().splitlines()) == 4
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "soho-embedded"]
    [logged] = client.search_runs([experiment.experiment_id], "tags.stage = 'pretrain_scl'")
    assert logged.info.run_name == "pretrain_scl"
    assert logged.data.params["pretrain.objectives.scl"] == "1.0"
    assert logged.data.params["pretrain.objectives.itc"] == "1.0"
    assert "train/scl_loss" in logged.data.metrics


def test_plots_show_renders_the_pretraining_curves(project):
    import json

    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    rendered = [json.dumps(plot) for name, plot in shown["data"].items() if name.endswith("pretrain.csv")]
    assert rendered and all('"vega' in text for text in rendered)
    assert any('"step": 2' in text and '"loss": ' in text for text in rendered)  # the 3 logged steps


def test_finetune_and_evaluate_one_task_and_load_the_logged_model(project):
    import base64
    import io
    import json

    import mlflow
    import pandas as pd
    from PIL import Image

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"]["optim"].update(steps=2, batch_size=4, checkpoint_every=0, log_every=1, num_workers=0)
    params["finetune"]["eval_batch_size"] = 8
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run(["dvc", "repro", "finetune@snli_ve"], project)
    report = json.loads((project / "results" / "snli_ve.json").read_text())
    assert set(report) == {"chance", "pretrained", "pretrained_scl", "scratch", "text_only"}
    for variant in report.values():
        assert set(variant) == {"dev", "test"} and 0 <= variant["test"]["accuracy"] <= 100
    submission = json.loads((project / "results" / "submissions" / "snli_ve.json").read_text())
    assert {"index", "prediction", "label"} <= set(submission["test"][0])
    for variant in ("pretrained", "pretrained_scl", "scratch", "text_only"):
        assert (project / "checkpoints" / "finetune" / "snli_ve" / variant / "model.safetensors").exists()

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    [experiment] = [e for e in client.search_experiments() if e.name == "soho-embedded"]
    runs = client.search_runs([experiment.experiment_id], "tags.task = 'snli_ve'")
    assert sorted(r.data.tags["stage"] for r in runs) == ["evaluate"] + ["finetune"] * 4
    assert {r.data.tags.get("variant") for r in runs} >= {"pretrained", "pretrained_scl", "scratch", "text_only"}
    [evaluation] = [r for r in runs if r.data.tags["stage"] == "evaluate"]
    assert "eval/pretrained/test/accuracy" in evaluation.data.metrics
    from soho import serving

    model = serving.load_model(f"runs:/{evaluation.info.run_id}/model")  # a pyfunc of safetensors + JSON
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, format="PNG")
    rows = pd.DataFrame({"image": [base64.b64encode(png.getvalue()).decode()], "text": ["there is a red circle"]})
    [label] = model.predict(rows)["label"]
    assert label in ("entailment", "neutral", "contradiction")
    # stages/evaluate.py re-scores the saved checkpoints, without training, to the same numbers
    (project / "results" / "snli_ve.json").unlink()
    run([sys.executable, "stages/evaluate.py", "--task", "snli_ve"], project)
    assert json.loads((project / "results" / "snli_ve.json").read_text()) == report
    assert not list((project / "checkpoints" / "finetune" / "snli_ve").glob("*/train/step-*"))  # checkpoint_every 0


def test_chance_scores_the_same_alone_as_beside_the_variants_of_one_evaluation_pass(project, monkeypatch):
    from soho.config import load_params
    from soho.tasks.evaluation import evaluate
    from soho.tasks.run import load_finetuned

    run(["dvc", "repro", "finetune@snli_ve"], project)
    monkeypatch.chdir(project)
    params = load_params(project / "params.yaml")
    alone = evaluate(params, "snli_ve", {"chance": None})
    together = evaluate(
        params, "snli_ve", {"pretrained": load_finetuned(params, "snli_ve", "pretrained"), "chance": None}
    )
    assert alone["chance"] == together["chance"]
    assert set(together["pretrained"]) == {"dev", "test"}


def test_each_finetuning_variant_starts_from_its_own_pretraining(project, monkeypatch):
    from safetensors.torch import load_file

    from soho.config import load_params
    from soho.tasks.run import build

    run(["dvc", "repro", "pretrain", "pretrain_scl"], project)
    monkeypatch.chdir(project)
    params = load_params(project / "params.yaml")
    start = {
        name: load_file(project / "checkpoints" / name / "model.safetensors") for name in ("pretrain", "pretrain_scl")
    }
    for variant, source in (("pretrained", "pretrain"), ("text_only", "pretrain"), ("pretrained_scl", "pretrain_scl")):
        weights = build(params, "snli_ve", variant, None).model.state_dict()
        other = start["pretrain" if source == "pretrain_scl" else "pretrain_scl"]
        assert all(weights[k].equal(v) for k, v in start[source].items()), variant
        assert not all(weights[k].equal(v) for k, v in other.items()), variant
    scratch = build(params, "snli_ve", "scratch", None).model.state_dict()
    assert not all(scratch[k].equal(v) for k, v in start["pretrain"].items())


def test_ablate_runs_each_row_on_the_short_schedule_and_logs_one_run_per_row(project):
    import json

    import mlflow

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ablations"] = {"steps": 2, "runs": {"no_vd": {"model.vd.size": 0}}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    # not in the default pipeline (`dvc repro` collects dvc.yaml), but a pipeline of its own
    assert "ablate" not in run(["dvc", "stage", "list", "--name-only"], project).stdout.split()
    assert "ablations/dvc.yaml:ablate" in run(["dvc", "stage", "list", "--all", "--name-only"], project).stdout
    run(["dvc", "repro", "ablations/dvc.yaml"], project)
    rows = json.loads((project / "results" / "ablations.json").read_text())
    assert set(rows) == {"default", "no_vd"}
    assert "heldout_mvm_acc" in rows["default"] and "heldout_mvm_acc" not in rows["no_vd"]  # no VD, no MVM
    for row in ("default", "no_vd"):
        folder = project / "checkpoints" / "ablations" / row
        assert (folder / "model.safetensors").exists() and (folder / "train" / "finished").exists()
        assert not list((folder / "train").glob("step-*"))  # step checkpoints dropped once finished
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "soho-embedded"]
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'ablate'")
    assert sorted(r.data.tags["ablation"] for r in runs) == ["default", "no_vd"]
    assert {r.data.params["pretrain.optim.steps"] for r in runs} == {"2"}
    assert len({r.data.tags["pipeline_id"] for r in runs}) == 1  # rows of one pipeline group together


def test_an_ablation_is_also_a_dvc_experiment(project):
    import json

    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], project)
    run(["dvc", "exp", "run", "-n", "no-mvm", "-S", "pretrain.objectives.mvm=0", "pretrain"], project)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    names = [e.get("name") for commit in shown for e in (commit.get("experiments") or []) for e in e.get("revs", [])]
    assert "no-mvm" in names
    diff = json.loads(run(["dvc", "metrics", "diff", "--json", "HEAD", "no-mvm"], project).stdout)
    assert "results/pretrain.json" in diff
