"""Overrides of ``params.yaml``: ``SOHO_*`` variables, ``ablations.runs`` rows, ``pretrain_scl.overrides``.

Issue 15 (parameters): a typo in a section name was ignored, a non-JSON list ended in a
pydantic-settings traceback, environment errors said ``params.yaml``, a dict from the
environment was merged into the file's, a bad ablation row was found only after the rows
before it had trained, and ``finetune.variants: []`` trained nothing.
"""

import re

import pytest

from soho import ablations
from soho.config import ConfigError, load_params, with_overrides

from ..conftest import REPO


@pytest.fixture(autouse=True)
def no_soho_env(monkeypatch):
    """Only the variables a test sets: none from the shell running the tests."""
    import os

    for name in [name for name in os.environ if name.upper().startswith("SOHO_")]:
        monkeypatch.delenv(name)


def write(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_an_unknown_section_is_refused_in_one_line_naming_the_variable_and_the_sections(monkeypatch):
    monkeypatch.setenv("SOHO_PRETRAINN__OPTIM__STEPS", "3")
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("environment: SOHO_PRETRAINN__OPTIM__STEPS: unknown section 'pretrainn'")
    for section in ("ablations", "finetune", "pretrain", "pretrain_scl", "seed", "shard"):
        assert re.search(rf"\b{section}\b", message)


def test_a_nested_typo_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SOHO_PRETRAIN__OPTIMM__STEPS", "3")
    with pytest.raises(ConfigError, match=r"SOHO_PRETRAIN__OPTIMM__STEPS: unknown key pretrain\.optimm"):
        load_params(REPO / "params.yaml")
    monkeypatch.delenv("SOHO_PRETRAIN__OPTIMM__STEPS")
    monkeypatch.setenv("SOHO_SEED__X", "3")
    with pytest.raises(ConfigError, match=r"SOHO_SEED__X: seed is a value, not a section"):
        load_params(REPO / "params.yaml")


def test_the_variables_that_are_not_parameters_are_listed_and_load(monkeypatch):
    """Every ``SOHO_*`` name the repository uses is a parameter override or in ``NOT_PARAMETERS``."""
    from soho.config import NOT_PARAMETERS, Params

    used = set()
    for folder in ("scripts", "soho", "stages", "tests", ".ci", "docker"):
        for path in (REPO / folder).rglob("*"):
            if (
                path.is_file()
                and path.suffix in {"", ".py", ".sh", ".yaml", ".toml"}
                and "__pycache__" not in path.parts
            ):
                used |= set(re.findall(r"\bSOHO_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="ignore")))
    top_level = {f"SOHO_{name.upper()}" for name in Params.model_fields}
    not_overrides = {name for name in used if "__" not in name and name not in top_level}
    assert not_overrides <= set(NOT_PARAMETERS), sorted(not_overrides - set(NOT_PARAMETERS))
    assert {"SOHO_PROFILE", "SOHO_PIPELINE_ID", "SOHO_SKIP_PIPELINE"} <= set(NOT_PARAMETERS)
    for name in NOT_PARAMETERS:
        monkeypatch.setenv(name, "embedded" if name == "SOHO_PROFILE" else "1")
    assert load_params(REPO / "params.yaml").profile == "embedded"


def test_an_environment_error_says_environment_and_names_the_variable(monkeypatch):
    monkeypatch.setenv("SOHO_PRETRAIN__OPTIM__STEPS", "-5")
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml")
    assert str(err.value) == (
        "environment: 1 invalid parameter(s)\n"
        "  pretrain.optim.steps (SOHO_PRETRAIN__OPTIM__STEPS): Input should be greater than 0 (got '-5')"
    )


def test_file_and_environment_errors_together_say_which_is_which(tmp_path, monkeypatch):
    path = write(tmp_path, "data:\n  vg_images: -3\n")
    monkeypatch.setenv("SOHO_SEED", "x")
    with pytest.raises(ConfigError) as err:
        load_params(path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path} + environment: 2 invalid parameter(s)"
    assert "  data.vg_images: Input should be greater than 0 (got -3)" in lines
    assert any(line.startswith("  seed (SOHO_SEED): Input should be a valid integer") for line in lines)


def test_a_stage_prints_the_environment_error_and_exits_2(monkeypatch, capsys):
    from soho import stage

    monkeypatch.setenv("SOHO_PRETRAIN__OPTIM__STEPS", "-5")
    monkeypatch.setattr("sys.argv", ["stages/pretrain.py", "--params", str(REPO / "params.yaml")])
    assert stage.run("pretrain", lambda params, args: None) == 2
    assert capsys.readouterr().err.strip() == (
        "error: pretrain: environment: 1 invalid parameter(s)\n"
        "  pretrain.optim.steps (SOHO_PRETRAIN__OPTIM__STEPS): Input should be greater than 0 (got '-5')"
    )


def test_a_value_that_is_not_json_is_a_config_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SOHO_SHARD__DATASETS", "coco,vg")
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml")
    assert str(err.value) == (
        "environment: SOHO_SHARD__DATASETS: not valid JSON ('coco,vg'); shard.datasets takes a JSON list, "
        """e.g. SOHO_SHARD__DATASETS='["coco", "vg"]'"""
    )
    monkeypatch.setenv("SOHO_SHARD__DATASETS", '["coco", "vg"]')
    monkeypatch.setenv("SOHO_ABLATIONS__RUNS", "{no_vd: 0}")
    with pytest.raises(ConfigError, match=r"^environment: SOHO_ABLATIONS__RUNS: not valid JSON .*a JSON object"):
        load_params(REPO / "params.yaml")


def test_lists_and_dicts_from_the_environment_replace_the_files(tmp_path, monkeypatch):
    path = write(
        tmp_path,
        "pretrain_scl:\n  overrides: {pretrain.objectives.itc: 1.0, pretrain.objectives.scl: 1.0,"
        " pretrain.objectives.mvm: 0.0}\n"
        "ablations:\n  runs: {vd_small: {model.vd.size: 16}, no_vd: {model.vd.size: 0}}\n"
        "finetune:\n  variants: [pretrained, scratch]\n  optim: {steps: 7, lr: 0.001}\n",
    )
    scl = '{"pretrain.objectives.itc": 2.0, "pretrain.objectives.scl": 1.0}'
    monkeypatch.setenv("SOHO_PRETRAIN_SCL__OVERRIDES", scl)
    monkeypatch.setenv("SOHO_ABLATIONS__RUNS", '{"vd_tiny": {"model.vd.size": 4}}')
    monkeypatch.setenv("SOHO_FINETUNE__VARIANTS", '["pretrained", "text_only"]')
    params = load_params(path)
    assert params.pretrain_scl.overrides == {"pretrain.objectives.itc": 2.0, "pretrain.objectives.scl": 1.0}
    assert params.ablations.runs == {"vd_tiny": {"model.vd.size": 4}}
    assert params.finetune.variants == ("pretrained", "text_only")
    # one row by name replaces that row only; a section given as JSON sets the keys it names
    monkeypatch.delenv("SOHO_ABLATIONS__RUNS")
    monkeypatch.setenv("SOHO_ABLATIONS__RUNS__NO_VD", '{"model.vd.size": 0, "pretrain.objectives.mvm": 0.0}')
    monkeypatch.setenv("SOHO_FINETUNE__OPTIM", '{"steps": 3}')
    params = load_params(path)
    assert params.ablations.runs == {
        "vd_small": {"model.vd.size": 16},
        "no_vd": {"model.vd.size": 0, "pretrain.objectives.mvm": 0.0},
    }
    assert params.finetune.optim.steps == 3 and params.finetune.optim.lr == 0.001


def test_with_overrides_replaces_lists_and_dicts_too():
    params = load_params(REPO / "params.yaml")
    row = {"vd_tiny": {"model.vd.size": 4}}
    assert with_overrides(params, {"ablations.runs": row}).ablations.runs == row
    scl = {"pretrain.objectives.itc": 2.0, "pretrain.objectives.scl": 0.5}
    assert with_overrides(params, {"pretrain_scl.overrides": scl}).pretrain_scl.overrides == scl
    assert with_overrides(params, {"finetune.variants": ["pretrained"]}).finetune.variants == ("pretrained",)
    objectives = with_overrides(params, {"pretrain.objectives": {"itc": 1.0}}).pretrain.objectives
    assert objectives.itc == 1.0 and objectives.mvm == params.pretrain.objectives.mvm  # a section: keys set


def test_per_task_overrides_from_the_environment_still_merge_over_the_shared_defaults(monkeypatch):
    from soho.tasks import finetune_params

    monkeypatch.setenv("SOHO_FINETUNE__TASKS", '{"vqa": {"optim": {"steps": 100}}}')
    params = load_params(REPO / "params.yaml")
    vqa = finetune_params(params, "vqa")
    assert vqa.optim.steps == 100 and vqa.optim.lr == params.finetune.optim.lr
    assert vqa.optim.batch_size == params.finetune.optim.batch_size
    assert finetune_params(params, "nlvr2").optim == params.finetune.optim


def test_the_environment_does_not_beat_an_ablation_rows_own_overrides(monkeypatch):
    """The rows are built from parameters that already hold the environment's values."""
    monkeypatch.setenv("SOHO_PRETRAIN__OPTIM__STEPS", "7")
    monkeypatch.setenv("SOHO_MODEL__VD__SIZE", "32")
    params = load_params(REPO / "params.yaml")
    assert params.pretrain.optim.steps == 7 and params.model.vd.size == 32
    row = ablations.ablation_params(params, "vd_small", params.ablations.runs["vd_small"])
    assert row.model.vd.size == 16 and row.pretrain.optim.steps == params.ablations.steps


def test_every_ablation_row_is_validated_when_the_parameters_load(tmp_path, monkeypatch):
    path = write(
        tmp_path,
        "ablations:\n  runs:\n    vd_small: {model.vd.size: 16}\n    typo: {model.vd.sizee: 3}\n"
        "    no_itc: {pretrain.objectives.scl: 1.0}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert str(err.value) == (
        f"{path}: ablations.runs.typo: 1 invalid parameter(s)\n"
        "  model.vd.sizee: Extra inputs are not permitted (got 3)\n"
        f"{path}: ablations.runs.no_itc: 1 invalid parameter(s)\n"
        "  pretrain.objectives: Value error, scl: SCL is trained beside ITC as in the SCL paper, "
        "so itc must be > 0 (got itc=0.0)"
    )
    monkeypatch.setenv("SOHO_ABLATIONS__RUNS", '{"x": {"model.vd.size": -1}}')
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml")
    assert str(err.value) == (
        "environment (SOHO_ABLATIONS__RUNS): ablations.runs.x: 1 invalid parameter(s)\n"
        "  model.vd.size: Input should be greater than or equal to 0 (got -1)"
    )


def test_the_scl_overrides_are_validated_when_the_parameters_load(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"params\.yaml: pretrain_scl\.overrides: must switch SCL on"):
        load_params(write(tmp_path, "pretrain_scl:\n  overrides: {pretrain.objectives.itc: 1.0}\n"))
    with pytest.raises(ConfigError, match=r"params\.yaml: pretrain_scl\.overrides: only pretrain\.\* keys"):
        load_params(write(tmp_path, "pretrain_scl:\n  overrides: {model.vd.size: 8, pretrain.objectives.scl: 1.0}\n"))
    monkeypatch.setenv("SOHO_PRETRAIN_SCL__OVERRIDES", '{"pretrain.objectives.scl": 1.0}')
    with pytest.raises(
        ConfigError,
        match=r"(?s)^environment \(SOHO_PRETRAIN_SCL__OVERRIDES\): pretrain_scl\.overrides: .*itc must be > 0",
    ):
        load_params(REPO / "params.yaml")


def test_loading_tries_each_row_once_and_a_rows_parameters_do_not_try_the_rows_again(monkeypatch):
    import soho.config
    from soho.train import variants

    calls = {"check": 0, "rows": [], "scl": 0}

    def counted(name, original):
        def wrapper(*args, **kwargs):
            if name == "rows":
                calls["rows"].append(args[1])
            else:
                calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(soho.config, "check_overrides", counted("check", soho.config.check_overrides))
    monkeypatch.setattr(ablations, "ablation_params", counted("rows", ablations.ablation_params))
    monkeypatch.setattr(variants, "variant_params", counted("scl", variants.variant_params))
    params = load_params(REPO / "params.yaml")
    assert calls == {"check": 1, "rows": list(params.ablations.runs), "scl": 1}


def test_no_variant_or_no_soho_variant_is_an_error(monkeypatch):
    monkeypatch.setenv("SOHO_FINETUNE__VARIANTS", "[]")
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml")
    assert str(err.value).startswith(
        "environment: 1 invalid parameter(s)\n  finetune.variants (SOHO_FINETUNE__VARIANTS): Value error, "
        "must include 'pretrained'"
    )
    monkeypatch.setenv("SOHO_FINETUNE__VARIANTS", '["scratch", "text_only"]')
    with pytest.raises(ConfigError, match=r"finetune\.variants .*must include 'pretrained'.*got \['scratch'"):
        load_params(REPO / "params.yaml")
    monkeypatch.setenv("SOHO_FINETUNE__VARIANTS", '["pretrained", "scratch", "pretrained"]')
    with pytest.raises(ConfigError, match=r"finetune\.variants .*'pretrained' twice"):
        load_params(REPO / "params.yaml")
    monkeypatch.setenv("SOHO_FINETUNE__VARIANTS", '["pretrained"]')
    assert load_params(REPO / "params.yaml").finetune.variants == ("pretrained",)


def test_null_unsets_a_value_that_may_be_unset_and_stays_text_where_it_may_not(monkeypatch):
    """``SOHO_MODEL__VISION__WEIGHTS=null`` means a random CNN, as ``weights: null`` in the file; it was ``Path('null')``."""
    monkeypatch.setenv("SOHO_PROFILE", "paper")
    assert load_params(REPO / "params.yaml").model.vision.weights is not None  # the profile names ImageNet weights
    monkeypatch.setenv("SOHO_MODEL__VISION__WEIGHTS", "null")
    assert load_params(REPO / "params.yaml").model.vision.weights is None
    monkeypatch.setenv("SOHO_MODEL__TEXT__INIT", "null")  # a str that may not be unset: the folder name "null"
    assert load_params(REPO / "params.yaml").model.text.init == "null"
