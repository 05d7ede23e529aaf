"""The stage kit (``soho.stage.run``): one rank-0 MLflow run per stage, the pipeline id explicit.

Issue 14: `download`, `shard` and `validate` opened no MLflow run, and the pipeline id
travelled through ``os.environ``. Here the three stages run in this process (as
``python stages/<name>.py`` would) on tiny data, against a scratch SQLite store.
"""

import errno
import inspect
import json
import os
import runpy
import shutil
import sys

import pytest
import yaml

from soho import stage, tracking
from soho.config import ConfigError, load_params
from soho.io import write_text
from soho.train.distributed import DistContext

from ..conftest import REPO, tiny_data

PIPELINE = "kit-under-test"


def stage_module(name: str) -> dict:
    """The globals of ``stages/<name>.py`` (its ``main`` and argument hook), without running it."""
    return runpy.run_path(str(REPO / "stages" / f"{name}.py"))


def run_stage(patch, name: str, params, *argv: str) -> int:
    module = stage_module(name)
    patch.setattr(sys, "argv", [f"stages/{name}.py", "--params", str(params), *argv])
    return stage.run(name, module["main"], module.get("add_args"))


def write_params(root, results):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = tiny_data().model_dump(mode="json")
    params["paths"] = {"raw": str(root / "raw"), "shards": str(root / "shards"), "results": str(results)}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A scratch folder as working directory, its own MLflow store, no SOHO_* ids or profile."""
    root = tmp_path_factory.mktemp("kit")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        for name in ("SOHO_PIPELINE_ID", "SOHO_PROFILE"):
            patch.delenv(name, raising=False)
        patch.chdir(root)
        yield root, patch


@pytest.fixture(scope="module")
def pipeline(env):
    """download -> shard -> validate (against the committed results), one pipeline id."""
    root, patch = env
    params = write_params(root, REPO / "results")
    reference = ("--reference-dir", str(REPO / "reference"))
    codes = {name: run_stage(patch, name, params, "--pipeline-id", PIPELINE) for name in ("download", "shard")}
    codes["validate"] = run_stage(patch, "validate", params, "--pipeline-id", PIPELINE, *reference)
    return root, codes


def runs(root, pipeline_id: str) -> dict:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "soho-embedded"]
    found = client.search_runs([experiment.experiment_id], f"tags.pipeline_id = '{pipeline_id}'")
    return {"client": client, "runs": found, "by_stage": {r.data.tags["stage"]: r for r in found}}


def test_download_shard_and_validate_each_open_exactly_one_run_tagged_with_their_stage(pipeline):
    root, codes = pipeline
    assert codes == {"download": 0, "shard": 0, "validate": 0}
    found = runs(root, PIPELINE)
    assert sorted(r.data.tags["stage"] for r in found["runs"]) == ["download", "shard", "validate"]
    for name, logged in found["by_stage"].items():
        assert logged.info.run_name == name and logged.info.status == "FINISHED"
        assert logged.data.tags["profile"] == "embedded" and logged.data.params["seed"] == "0"


def test_each_stage_logs_what_it_did_under_the_metric_key_convention(pipeline):
    root, _ = pipeline
    found = runs(root, PIPELINE)
    download, shard, validate = (found["by_stage"][name].data for name in ("download", "shard", "validate"))
    assert download.tags["download.source"] == "generated"
    assert download.metrics["download/files"] > 10 and download.metrics["download/bytes"] > 10_000
    stats = json.loads((root / "shards" / "stats.json").read_text())
    assert shard.metrics == tracking.phase_metrics("shard", stats)
    assert shard.metrics["shard/datasets/coco/train/samples"] == 12 and shard.metrics["shard/total/bad"] == 0
    run_id = found["by_stage"]["shard"].info.run_id
    assert [a.path for a in found["client"].list_artifacts(run_id)] == ["stats.json"]
    assert validate.metrics["validate/bands/failed"] == 0 and validate.metrics["validate/bands/checked"] > 50
    assert validate.metrics["validate/claims/broken"] == 0 and validate.metrics["validate/claims/established"] >= 1
    assert validate.tags["validate.outcome"] == "passed"
    claims = {k.removeprefix("validate.claim."): v for k, v in validate.tags.items() if k.startswith("validate.claim.")}
    assert claims and set(claims.values()) <= {"holds", "open"}
    assert all(key.split("/")[0] in tracking.PHASES for data in (download, shard, validate) for key in data.metrics)


def test_a_failing_validate_still_logs_its_counts_and_its_run_is_failed(pipeline, env):
    root, patch = env
    results = root / "bad-results"
    shutil.copytree(REPO / "results", results, ignore=shutil.ignore_patterns("submissions"))
    metrics = json.loads((results / "pretrain.json").read_text())
    (results / "pretrain.json").write_text(json.dumps(metrics | {"heldout_itm_acc": -1.0}))
    (root / "bad").mkdir()
    params = write_params(root / "bad", results)
    with pytest.raises(SystemExit) as exit_:
        run_stage(patch, "validate", params, "--pipeline-id", "kit-fail", "--reference-dir", str(REPO / "reference"))
    assert exit_.value.code == 1
    [logged] = runs(root, "kit-fail")["runs"]
    assert logged.info.status == "FAILED" and logged.data.tags["validate.outcome"] == "failed"
    assert logged.data.metrics["validate/bands/failed"] >= 1


def probe(patch, *argv: str, own_runs: bool = True, body=None) -> tuple[int, list]:
    """``stage.run`` of a body that records the kit it was handed."""
    seen: list = []

    def record(params, args):
        seen.append(args.kit)
        if body is not None:
            body(params, args)

    patch.setattr(sys, "argv", ["stages/probe.py", "--params", str(REPO / "params.yaml"), *argv])
    return stage.run("probe", record, own_runs=own_runs), seen


def test_the_pipeline_id_is_the_flag_else_the_environment_else_derived(env, monkeypatch):
    monkeypatch.setenv("SOHO_PIPELINE_ID", "from-env")
    assert probe(monkeypatch, "--pipeline-id", "from-flag")[1][0].pipeline_id == "from-flag"
    assert probe(monkeypatch)[1][0].pipeline_id == "from-env"
    monkeypatch.delenv("SOHO_PIPELINE_ID")
    derived = tracking.derived_pipeline_id(load_params(REPO / "params.yaml"))
    assert probe(monkeypatch)[1][0].pipeline_id == derived and len(derived) == 12


def test_stage_run_takes_the_pipeline_id_as_an_argument_and_reads_no_environment(env, monkeypatch):
    root, _ = env
    parameter = inspect.signature(tracking.stage_run).parameters["pipeline_id"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is inspect.Parameter.empty
    monkeypatch.setenv("SOHO_PIPELINE_ID", "from-env")
    with tracking.stage_run("report", load_params(REPO / "params.yaml"), pipeline_id="explicit"):
        pass
    assert [r.data.tags["stage"] for r in runs(root, "explicit")["runs"]] == ["report"]
    assert runs(root, "from-env")["runs"] == []


def test_own_runs_stages_and_other_ranks_get_the_context_but_no_run(env, monkeypatch):
    root, _ = env
    code, [kit] = probe(monkeypatch, "--pipeline-id", "kit-own", own_runs=True)
    assert code == 0 and kit.mlflow is None and kit.ctx.is_main and kit.stage == "probe"
    kit.log_metrics("train", {"loss": 1.0})  # no run: nothing to log to, and no error
    monkeypatch.setattr(stage, "init_from_env", lambda: DistContext(rank=1, world_size=2))
    code, [kit] = probe(monkeypatch, "--pipeline-id", "kit-rank1", own_runs=False)
    assert code == 0 and kit.mlflow is None and kit.ctx.rank == 1
    assert runs(root, "kit-own")["runs"] == [] and runs(root, "kit-rank1")["runs"] == []


def test_a_user_error_inside_the_run_exits_2_and_the_run_is_failed(env, monkeypatch, capsys):
    root, _ = env

    def bad(params, args):
        args.kit.log_metrics("validate", {"bands": {"checked": 3}})
        raise ConfigError("reference/embedded.yaml: band x: low > high")

    code, [kit] = probe(monkeypatch, "--pipeline-id", "kit-error", own_runs=False, body=bad)
    assert code == 2 and kit.mlflow is not None
    assert capsys.readouterr().err.strip() == "error: probe: reference/embedded.yaml: band x: low > high"
    [logged] = runs(root, "kit-error")["runs"]
    assert logged.info.status == "FAILED" and logged.data.tags["stage"] == "probe"
    assert logged.data.metrics == {"validate/bands/checked": 3}


def last_line(capsys) -> str:
    """The stage's last line on stderr (MLflow may log before it), checking no traceback came."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


# Issue 15: a full disk and permissions are one line naming the path, exit 2, like a bad parameter.


def test_a_full_disk_is_one_line_naming_the_output_and_the_run_is_failed(env, monkeypatch, capsys):
    root, _ = env
    target = root / "full" / "pretrain.json"

    def fill_the_disk(params, args):
        def no_space(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", no_space)  # where a full disk shows up (delayed allocation)
        write_text(target, "{}")

    code, _ = probe(monkeypatch, "--pipeline-id", "kit-full", own_runs=False, body=fill_the_disk)
    assert code == 2
    assert last_line(capsys) == (
        f"error: probe: {target}: No space left on device (ENOSPC); free some space there and run the stage again"
    )
    assert os.listdir(target.parent) == []  # no half-written file, no temporary
    [logged] = runs(root, "kit-full")["runs"]
    assert logged.info.status == "FAILED"


def test_an_unwritable_output_folder_is_one_line_naming_the_output(env, monkeypatch, capsys):
    root, _ = env
    folder = root / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root ignores the mode: refuse as the kernel would for another user
        real = os.open

        def refused(path, flags, mode=0o777, *args, **kwargs):
            if str(path).startswith(str(folder)) and flags & os.O_CREAT:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real(path, flags, mode, *args, **kwargs)

        monkeypatch.setattr(os, "open", refused)
    try:
        code, _ = probe(monkeypatch, body=lambda params, args: write_text(folder / "table.json", "{}"))
    finally:
        folder.chmod(0o700)
    assert code == 2
    assert last_line(capsys) == (
        f"error: probe: {folder / 'table.json'}: Permission denied (EACCES); give this user access to it "
        "(or its folder), or point paths.* in params.yaml elsewhere"
    )
