"""The fine-tuned model as `evaluate@<task>` logs it: data only, loaded by the installed package, served over HTTP.

One tiny VQA model (random weights, nothing trained) is scored and logged by the stage's own
code (``score_task``) into a scratch SQLite store; the slow tests read that run's model.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ..conftest import REPO, scratch_folder, tiny_model
from ..support.mlflow_ui import free_port, wait_ready

PIPELINE = "pipeline-under-test"


@pytest.fixture(scope="module")
def logged(tiny_shards, tmp_path_factory, request):
    """(model URI, tracking URI, params, eval rows): `evaluate@vqa` run by ``score_task`` on a built, untrained model."""
    import mlflow

    from soho.config import load_params, with_overrides
    from soho.tasks import finetune_params, get
    from soho.tasks.run import build, variant_dir
    from soho.tasks.scoring import score_task
    from soho.train import checkpoint

    with scratch_folder(request, tmp_path_factory, "serving") as root:
        overrides = {
            "paths.shards": str(tiny_shards),
            "paths.checkpoints": str(root / "checkpoints"),
            "paths.results": str(root / "results"),
            "model": tiny_model().model_dump(mode="json"),
            "finetune.variants": ["pretrained"],
            "finetune.eval_batch_size": 3,
        }
        params = with_overrides(load_params(REPO / "params.yaml"), overrides)
        answers = get("vqa").classes(tiny_shards, finetune_params(params, "vqa"))
        folder = variant_dir(params, "vqa", "pretrained")
        folder.mkdir(parents=True)
        checkpoint.save_model(build(params, "vqa", "scratch", answers), str(folder / "model.safetensors"))
        (folder / "answers.json").write_text(json.dumps(answers))
        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
            patch.chdir(root)  # a SQLite store keeps its artifacts in ./mlruns
            score_task(params, "vqa", PIPELINE)
            mlflow.set_tracking_uri(tracking_uri)
            [run] = mlflow.search_runs(
                search_all_experiments=True, filter_string="tags.stage = 'evaluate'", output_format="list"
            )
            yield f"runs:/{run.info.run_id}/model", tracking_uri, params, answers


def vqa_rows(shards: Path) -> list[dict]:
    """Every val2014 question in the evaluation's order, with its image's JPEG bytes as base64."""
    from soho.data import shards as shard_io

    rows = []
    for url in shard_io.shard_urls(shards, "vqa", "val2014"):
        for sample in shard_io.wds.WebDataset(url, shardshuffle=False, empty_check=False):
            image = base64.b64encode(sample["jpg"]).decode()
            for question in json.loads(sample["json"])["questions"]:
                rows.append({"image": image, "text": question["question"], "question_id": question["question_id"]})
    return rows


@pytest.mark.slow  # the module's logged model: ~30 s to build, score and log
def test_the_logged_model_is_a_pyfunc_of_data_with_no_code_and_no_pickle(logged, tmp_path):
    import mlflow.artifacts
    import yaml

    uri, *_ = logged
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path)))
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert not (local / "code").exists()
    assert [f for f in files if f.endswith((".py", ".pyc", ".pkl", ".pickle", ".pt", ".pth", ".bin"))] == []
    assert {"data/soho/model.safetensors", "data/soho/model.json", "data/soho/tokenizer/vocab.txt"} <= set(files)
    flavors = yaml.safe_load((local / "MLmodel").read_text())["flavors"]
    assert set(flavors) == {"python_function"}
    assert flavors["python_function"]["loader_module"] == "soho.serving"
    requirements = (local / "requirements.txt").read_text().split()
    assert any(r.startswith("soho==") for r in requirements) and any(r.startswith("torch==") for r in requirements)


@pytest.mark.slow  # the module's logged model: ~30 s to build, score and log
def test_the_loaded_model_answers_what_the_evaluation_answered(logged):
    """Raw JPEG bytes and question text in, the same answers as ``results/submissions/vqa.json`` out."""
    import pandas as pd

    from soho import serving

    uri, _, params, answers = logged
    rows = vqa_rows(params.paths.shards)
    model = serving.load_model(uri)
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["image", "text"]
    served = model.predict(pd.DataFrame([{"image": r["image"], "text": r["text"]} for r in rows]))
    assert list(served.columns) == ["answer", "score"]
    submission = json.loads((Path(params.paths.results) / "submissions" / "vqa.json").read_text())
    evaluated = {row["question_id"]: row["answer"] for row in submission}
    assert len(rows) == len(evaluated) > 1
    assert dict(zip([r["question_id"] for r in rows], served["answer"], strict=True)) == evaluated
    assert set(served["answer"]) <= set(answers) and served["score"].between(0, 1).all()


class Touch:
    """Unpickling this creates ``marker``: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_model_is_refused_before_anything_is_unpickled(tmp_path, capsys):
    import mlflow.pyfunc
    import mlflow.pytorch
    import torch

    from soho import serving
    from soho.serving.__main__ import main

    marker = tmp_path / "unpickled"

    class Hostile(mlflow.pyfunc.PythonModel):
        def __init__(self):
            self.payload = Touch(marker)

        def predict(self, context, model_input, params=None):
            return model_input

    mlflow.pyfunc.save_model(tmp_path / "cloudpickle", python_model=Hostile(), pip_requirements=[])
    mlflow.pyfunc.load_model(str(tmp_path / "cloudpickle"))
    assert marker.exists()  # plain MLflow loading runs what the pickle says
    marker.unlink()
    with pytest.raises(
        serving.ModelArtifactError, match=r"loader_module 'mlflow\.pyfunc\.model' is not 'soho\.serving'"
    ):
        serving.load_model(str(tmp_path / "cloudpickle"))
    assert not marker.exists()
    mlflow.pytorch.save_model(
        torch.nn.Linear(2, 1), tmp_path / "torch-pickle", serialization_format="pickle", pip_requirements=[]
    )
    with pytest.raises(serving.ModelArtifactError, match=r"flavors \['python_function', 'pytorch'\]"):
        serving.load_model(str(tmp_path / "torch-pickle"))
    assert main(["fetch", str(tmp_path / "cloudpickle"), str(tmp_path / "fetched")]) == 2
    [line] = [text for text in capsys.readouterr().err.splitlines() if "error" in text]  # after MLflow's progress bar
    assert line.startswith(f"error: soho.serving: {tmp_path / 'cloudpickle'}: loader_module")
    assert list((tmp_path / "fetched").iterdir()) == []  # the refused copy is gone


def _ship_code(model: Path) -> None:
    (model / "code" / "soho").mkdir(parents=True)
    (model / "code" / "soho" / "serving.py").write_text("raise SystemExit('ran the run\\'s code')\n")
    text = (model / "MLmodel").read_text()
    (model / "MLmodel").write_text(
        text.replace("    loader_module: soho.serving", "    code: code\n    loader_module: soho.serving")
    )


@pytest.mark.slow  # the module's logged model: ~30 s to build, score and log
@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_ship_code, r"MLmodel python_function has 'code'"),
        (
            lambda m: (m / "data" / "soho" / "state.pkl").write_bytes(b"\x80\x04N."),
            r"data/soho/state\.pkl is not a file",
        ),
        (lambda m: (m / "loader.py").write_text("print('hi')\n"), r"loader\.py is not a file a SOHO model holds"),
        (lambda m: (m / "data" / "soho" / "model.json").write_text("{"), r"model\.json: Expecting property name"),
    ],
    ids=["code-dir", "pickle-in-data", "python-file", "bad-settings"],
)
def test_a_tampered_model_is_refused(logged, tmp_path, tamper, reason):
    import mlflow.artifacts

    from soho import serving

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=logged[0], dst_path=str(tmp_path)))
    serving.check(local)  # as logged: accepted
    tamper(local)
    with pytest.raises(serving.ModelArtifactError, match=reason):
        serving.load_model(str(local))


@pytest.mark.slow  # the module's logged model
def test_a_link_in_the_model_folder_is_refused_where_it_lies(logged, tmp_path):
    """``mlflow models serve`` loads a folder in place; ``_load_pyfunc`` checks it (a copy would follow the link)."""
    import mlflow.artifacts

    from soho import serving

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=logged[0], dst_path=str(tmp_path)))
    (local / "data" / "soho" / "link.txt").symlink_to("/etc/hostname")
    with pytest.raises(serving.ModelArtifactError, match=r"data/soho/link\.txt is not a plain file or folder"):
        serving._load_pyfunc(str(local / "data" / "soho"))


@contextlib.contextmanager
def mlflow_serve(model: Path, env: dict, timeout_s: float = 180.0):
    """``mlflow models serve`` on 127.0.0.1 in this environment; yields the base URL; stops its process group."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model), "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, url, timeout_s, probe="/ping", name="mlflow models serve")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_question_about_an_image(logged, tmp_path):
    """The README's way: a checked copy (``python -m soho.serving fetch``), served by ``mlflow models serve``."""
    uri, tracking_uri, params, answers = logged
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(REPO)}
    fetched = subprocess.run(
        [sys.executable, "-m", "soho.serving", "fetch", uri, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert fetched.returncode == 0, fetched.stderr
    model = Path(fetched.stdout.strip())
    [row, *_] = vqa_rows(params.paths.shards)
    with mlflow_serve(model, env) as url:
        status, body = post(
            f"{url}/invocations",
            {"dataframe_split": {"columns": ["image", "text"], "data": [[row["image"], row["text"]]]}},
        )
        assert status == 200, body
        [prediction] = body["predictions"]
        assert prediction["answer"] in answers and 0 <= prediction["score"] <= 1
        status, body = post(
            f"{url}/invocations",
            {"dataframe_split": {"columns": ["image", "text"], "data": [["not base64!", "what?"]]}},
        )
        assert status == 400 and "row 0, column 'image': not a base64-encoded image" in body["message"]
    shutil.rmtree(model)
