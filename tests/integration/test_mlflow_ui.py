"""The MLflow UI, started on 127.0.0.1, renders a stage run's metrics in headless Chromium."""

import re

import pytest

from soho import tracking
from soho.config import Params

from ..support import mlflow_ui

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory, monkeypatch_module):
    """A SQLite store holding one tagged `evaluate@snli_ve` run with two metrics."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", uri)
    with tracking.stage_run("evaluate", Params(), task="snli_ve", pipeline_id="pipeline-under-test") as mlflow:
        mlflow.log_metrics({"eval/pretrained/test/accuracy": 87.25, "eval/scratch/test/accuracy": 61.5})
        run = mlflow.active_run()
    return uri, run.info.experiment_id, run.info.run_id


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_stage_run_is_tagged_for_grouping(store):
    import mlflow

    uri, _, run_id = store
    tags = mlflow.MlflowClient(uri).get_run(run_id).data.tags
    assert {k: tags[k] for k in ("stage", "task", "profile", "pipeline_id")} == {
        "stage": "evaluate",
        "task": "snli_ve",
        "profile": "embedded",
        "pipeline_id": "pipeline-under-test",
    }
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", tags["git_commit"])


def test_ui_renders_the_run_page_with_its_metrics(store, tmp_path):
    if mlflow_ui.chromium() is None:
        pytest.fail("chromium is missing: scripts/bootstrap.sh --dev installs Debian's chromium package")
    uri, experiment_id, run_id = store
    with mlflow_ui.serve(uri) as base_url:
        dom = mlflow_ui.render(mlflow_ui.run_page(base_url, experiment_id, run_id), tmp_path / "run.png")
    assert "evaluate@snli_ve" in dom  # the run name
    assert "eval/pretrained/test/accuracy" in dom and "87.25" in dom
    assert "eval/scratch/test/accuracy" in dom
    png = (tmp_path / "run.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
