"""``dvc repro`` with a ``SOHO_*`` override stops the stage instead of locking the file's value.

Issue 15: ``SOHO_PRETRAIN__OPTIM__STEPS=30 dvc repro -s pretrain`` recorded ``steps: 200`` in
dvc.lock and ``dvc status`` called the 30-step model up to date. Checked through DVC itself on
the cheapest stage, ``download`` (the embedded profile generates a tiny data set in seconds).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, tiny_data

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def dvc(args, cwd, **variables):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("SOHO_", "DVC_", "MLFLOW_"))}
    env.update(PATH=f"{BIN}:{env['PATH']}", HF_HUB_OFFLINE="1", PYTHONPATH=str(cwd), **variables)
    return subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture
def project(tmp_path):
    """A git + DVC project with the repo's stages, code and dvc.yaml, and tiny data sizes."""
    for name in ("soho", "stages", "profiles"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", tmp_path)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = tiny_data().model_dump(mode="json")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for args in (["init", "-q"], ["config", "core.analytics", "false"]):
        assert dvc(args, tmp_path).returncode == 0
    return tmp_path


def stage_errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def test_dvc_repro_refuses_a_soho_override_and_records_nothing(project):
    refused = dvc(["repro", "-s", "download"], project, SOHO_DATA__COCO__TRAIN="3")
    assert refused.returncode != 0
    assert stage_errors(refused) == [
        "error: download: environment: SOHO_DATA__COCO__TRAIN: DVC runs this stage (download) and records "
        "its parameters from params.yaml, not the environment, so dvc.lock and dvc status would not see it; "
        "unset it, then run dvc exp run -S data.coco.train=3"
    ], refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (project / "raw").exists() and not (project / "dvc.lock").exists()

    profile = dvc(["repro", "-s", "download"], project, SOHO_PROFILE="paper")
    assert profile.returncode != 0
    assert stage_errors(profile)[0].endswith("unset it, then run dvc exp run -S profile=paper"), profile.stderr
    assert not (project / "dvc.lock").exists()

    # what is not a parameter still works under DVC, and what ran is what the lock says
    ran = dvc(["repro", "-s", "download"], project, SOHO_PIPELINE_ID="dvc-overrides-test")
    assert ran.returncode == 0, ran.stderr
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["download"]["params"]["params.yaml"]["data"]["coco"]["train"] == 12
    annotations = json.loads((project / "raw" / "coco" / "dataset_coco.json").read_text())
    assert sum(image["split"] == "train" for image in annotations["images"]) == 12
    assert json.loads(dvc(["status", "--json", "download"], project).stdout) == {}
