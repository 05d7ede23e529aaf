"""The profile has one way in: ``--profile``, ``SOHO_PROFILE`` and the file's key, one rule.

Issue 14: ``SOHO_PROFILE=embedded`` with ``--profile paper`` used to give
``profile == "embedded"`` with the paper overlay merged.
"""

import pytest

from soho.config import PROFILES, ConfigError, Params, load_params

from ..conftest import REPO


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A params file whose paper overlay marks itself (``max_samples_per_shard: 999``)."""
    monkeypatch.delenv("SOHO_PROFILE", raising=False)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "paper.yaml").write_text("shard:\n  max_samples_per_shard: 999\n")
    return tmp_path


def write(project, profile_key):
    path = project / "params.yaml"
    path.write_text((f"profile: {profile_key}\n" if profile_key else "") + "shard:\n  max_samples_per_shard: 5\n")
    return path


def test_flag_and_environment_disagreeing_is_an_error_naming_both(monkeypatch):
    monkeypatch.setenv("SOHO_PROFILE", "embedded")
    with pytest.raises(ConfigError, match=r"--profile paper and SOHO_PROFILE=embedded disagree"):
        load_params(REPO / "params.yaml", profile="paper")
    monkeypatch.setenv("SOHO_PROFILE", "paper")
    with pytest.raises(ConfigError, match=r"--profile embedded and SOHO_PROFILE=paper disagree"):
        load_params(REPO / "params.yaml", profile="embedded")


def test_flag_and_environment_agreeing_give_that_profile_and_its_overlay(monkeypatch):
    monkeypatch.setenv("SOHO_PROFILE", "paper")
    params = load_params(REPO / "params.yaml", profile="paper")
    assert params.profile == "paper" and params.shard.max_samples_per_shard == 2000


@pytest.mark.parametrize("flag", [None, *PROFILES])
@pytest.mark.parametrize("env", [None, *PROFILES])
@pytest.mark.parametrize("in_file", [None, *PROFILES])
def test_the_overlay_merged_is_always_the_profile_reported(project, monkeypatch, flag, env, in_file):
    if env:
        monkeypatch.setenv("SOHO_PROFILE", env)
    path = write(project, in_file)
    if flag and env and flag != env:
        with pytest.raises(ConfigError, match="disagree"):
            load_params(path, profile=flag)
        return
    params = load_params(path, profile=flag)
    assert params.profile == (flag or env or in_file or "embedded")
    assert (params.shard.max_samples_per_shard == 999) == (params.profile == "paper")


def test_params_built_directly_ignore_soho_profile(monkeypatch):
    """Only load_params reads SOHO_PROFILE; a bare Params() cannot name a profile whose overlay it lacks."""
    monkeypatch.setenv("SOHO_PROFILE", "paper")
    monkeypatch.setenv("SOHO_SEED", "3")  # the other SOHO_* overrides still apply
    params = Params()
    assert params.profile == "embedded" and params.seed == 3


def test_the_stage_flag_offers_exactly_the_profiles():
    import argparse

    from soho import stage

    assert PROFILES == ("embedded", "paper")
    assert Params.model_fields["profile"].annotation.__args__ == PROFILES
    parser = stage.parser("probe", stage.run)
    [profile] = [action for action in parser._actions if action.dest == "profile"]
    assert tuple(profile.choices) == PROFILES
    assert isinstance(parser, argparse.ArgumentParser)


def test_a_stage_given_disagreeing_profiles_exits_2_with_one_line(monkeypatch, capsys):
    from soho import stage

    ran = []
    monkeypatch.setenv("SOHO_PROFILE", "embedded")
    monkeypatch.setattr("sys.argv", ["stages/probe.py", "--params", str(REPO / "params.yaml"), "--profile", "paper"])
    assert stage.run("probe", lambda params, args: ran.append(params)) == 2
    assert not ran
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: probe: profile: --profile paper and SOHO_PROFILE=embedded disagree; "
        "give one of them, or the same in both"
    )
