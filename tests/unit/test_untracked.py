"""Under DVC a stage refuses ``SOHO_*`` parameter overrides, which DVC would not record.

Issue 15 (DVC sees what ran): ``SOHO_PRETRAIN__OPTIM__STEPS=30 dvc repro -s pretrain`` locked
``steps: 200`` in dvc.lock, and ``dvc status`` then called the 30-step model up to date; so
did ``SOHO_PROFILE=paper dvc repro``. The command the refusal suggests is checked here by
DVC's own ``-S`` parser: it must give the parameters the variables gave.
"""

import shlex
import shutil

import pytest

from soho.config import ConfigError, load_params
from soho.untracked import DVC_STAGE

from ..conftest import REPO


@pytest.fixture(autouse=True)
def no_soho_env(monkeypatch):
    """Only the variables a test sets: none from the shell running the tests."""
    import os

    for name in [name for name in os.environ if name.upper().startswith("SOHO_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv(DVC_STAGE, raising=False)


@pytest.fixture(autouse=True)
def project(tmp_path, monkeypatch):
    """``params.yaml`` and the profile overlays in a scratch folder (``-S`` may rewrite it), the working directory."""
    shutil.copy(REPO / "params.yaml", tmp_path)
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refusal(monkeypatch, variables: dict[str, str], stage: str = "pretrain") -> str:
    """The error of ``load_params("params.yaml")`` as DVC runs a stage: in its folder, ``DVC_STAGE`` set."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(DVC_STAGE, stage)
    with pytest.raises(ConfigError) as err:
        load_params("params.yaml")
    return str(err.value)


def test_a_parameter_override_under_dvc_is_refused_in_one_line_naming_it_and_dvc_exp_run(monkeypatch):
    message = refusal(monkeypatch, {"SOHO_PRETRAIN__OPTIM__STEPS": "30"})
    assert "\n" not in message
    assert message.startswith("environment: SOHO_PRETRAIN__OPTIM__STEPS: DVC runs this stage (pretrain) ")
    assert "dvc.lock and dvc status would not see it" in message
    assert message.endswith("unset it, then run dvc exp run -S pretrain.optim.steps=30")


def test_soho_profile_under_dvc_is_refused_unless_it_is_the_files_profile(monkeypatch):
    message = refusal(monkeypatch, {"SOHO_PROFILE": "paper"}, stage="download")
    assert message.startswith("environment: SOHO_PROFILE: DVC runs this stage (download) ")
    assert message.endswith("run dvc exp run -S profile=paper")
    monkeypatch.setenv("SOHO_PROFILE", "embedded")  # what params.yaml says: nothing DVC misses
    assert load_params("params.yaml").profile == "embedded"


def test_the_variables_that_are_not_parameters_work_under_dvc(monkeypatch):
    monkeypatch.setenv(DVC_STAGE, "finetune@vqa")
    monkeypatch.setenv("SOHO_PIPELINE_ID", "20260101T000000-1")
    monkeypatch.setenv("SOHO_SKIP_PIPELINE", "1")
    assert load_params("params.yaml").pretrain.optim.steps == 200


def test_run_directly_a_stage_still_takes_every_override(monkeypatch):
    monkeypatch.setenv("SOHO_PRETRAIN__OPTIM__STEPS", "30")
    monkeypatch.setenv("SOHO_PROFILE", "paper")
    params = load_params("params.yaml")
    assert params.profile == "paper" and params.pretrain.optim.steps == 30


def test_every_variable_is_named_and_keys_the_overlay_sets_point_to_the_overlay(monkeypatch):
    message = refusal(
        monkeypatch,
        {"SOHO_PROFILE": "paper", "SOHO_PRETRAIN__OPTIM__STEPS": "30", "SOHO_SEED": "3"},
    )
    assert message.startswith("environment: SOHO_PROFILE, SOHO_SEED, SOHO_PRETRAIN__OPTIM__STEPS: ")
    assert "would not see them; unset them, then set pretrain.optim.steps in profiles/paper.yaml, " in message
    assert message.endswith("then run dvc exp run -S profile=paper -S seed=3")


def test_a_mapping_that_replaces_what_dvc_would_merge_points_to_params_yaml(monkeypatch):
    message = refusal(monkeypatch, {"SOHO_ABLATIONS__RUNS": '{"no_vd": {"model.vd.size": 0}}'})
    assert message.endswith("unset it, then set ablations.runs in params.yaml, then run dvc repro")


@pytest.mark.parametrize(
    "variables",
    [
        {"SOHO_PRETRAIN__OPTIM__STEPS": "30", "SOHO_SEED": "4"},
        {"SOHO_PRETRAIN__OPTIM": '{"steps": 50, "lr": 0.001}'},  # a section sets the keys it names
        {"SOHO_FINETUNE__VARIANTS": '["pretrained", "scratch"]'},
        {"SOHO_FINETUNE__TASKS__RETRIEVAL_COCO": '{"optim": {"steps": 100}}'},  # a key params.yaml lacks
        {"SOHO_FINETUNE__TASKS__NLVR2__OPTIM__BATCH_SIZE": "16"},
        {"SOHO_ABLATIONS__RUNS__WIDE_VD": '{"model.vd.size": 128}'},
        {"SOHO_MODEL__VISION__WEIGHTS": "weights/a, b's.pth"},  # quoted for the shell and for -S
        {"SOHO_MODEL__VISION__WEIGHTS": 'weights/"a" b.pth'},
        {"SOHO_PATHS__RAW": "2024", "SOHO_MODEL__VISION__WEIGHTS": "null"},  # text that -S would read otherwise
        {"SOHO_PRETRAIN__OPTIM__AMP": "false", "SOHO_PRETRAIN__OPTIM__LR": "1e-4"},
        {"SOHO_PROFILE": "paper", "SOHO_FINETUNE__VARIANTS": '["pretrained"]'},
    ],
)
def test_the_suggested_dvc_exp_run_gives_the_parameters_the_variables_gave(monkeypatch, project, variables):
    """The ``-S`` arguments, applied by DVC's own code, give the parameters the environment gave."""
    from dvc.utils.hydra import apply_overrides

    message = refusal(monkeypatch, variables)
    command = shlex.split(message.split("then run ", 1)[1])
    assert command[:3] == ["dvc", "exp", "run"]
    set_params = command[4::2]
    assert command[3::2] == ["-S"] * len(set_params)
    monkeypatch.delenv(DVC_STAGE)
    expected = load_params(project / "params.yaml")
    for name in variables:
        monkeypatch.delenv(name)
    apply_overrides(project / "params.yaml", set_params)
    assert load_params(project / "params.yaml") == expected


def test_every_stage_reading_a_section_the_paper_overlay_sets_depends_on_the_overlay():
    """Else editing ``profiles/paper.yaml`` (where the paper profile's keys live) left the stage up to date."""
    import yaml

    overlay = set(yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text()))
    for pipeline in ("dvc.yaml", "ablations/dvc.yaml"):
        stages = yaml.safe_load((REPO / pipeline).read_text())["stages"]
        for name, stage in stages.items():
            stage = stage.get("do", stage)  # foreach stages
            base = (REPO / pipeline).parent / stage.get("wdir", ".")
            deps = {(base / dep).resolve() for dep in stage.get("deps", [])}
            if overlay & set(stage.get("params", [])):
                assert (REPO / "profiles" / "paper.yaml").resolve() in deps, f"{pipeline}: {name}"
