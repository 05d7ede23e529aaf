import pytest

from soho.config import ConfigError, load_params

from ..conftest import REPO


def write(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repo_params_load_and_cover_every_key():
    params = load_params(REPO / "params.yaml")
    assert params.profile == "embedded"
    assert params.data.coco.train > 0
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(raw) <= set(params.model_dump())


def test_unknown_key_names_the_dotted_path(tmp_path):
    with pytest.raises(ConfigError, match=r"shard\.max_bad_fractoin: Extra inputs are not permitted"):
        load_params(write(tmp_path, "shard:\n  max_bad_fractoin: 0.1\n"))


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.image_size: .*integer.*'big'"):
        load_params(write(tmp_path, "data:\n  image_size: big\n"))


def test_negative_and_empty_split_sizes_fail(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.coco\.val: Input should be greater than 0"):
        load_params(write(tmp_path, "data:\n  coco: {train: 5, val: 0, test: 1}\n"))
    with pytest.raises(ConfigError, match=r"data\.vg_images: Input should be greater than 0 \(got -3\)"):
        load_params(write(tmp_path, "data:\n  vg_images: -3\n"))


def test_empty_and_unknown_datasets_fail(tmp_path):
    with pytest.raises(ConfigError, match=r"shard\.datasets: .*at least one"):
        load_params(write(tmp_path, "shard:\n  datasets: []\n"))
    with pytest.raises(ConfigError, match=r"shard\.datasets: .*unknown dataset.*'imagenet'"):
        load_params(write(tmp_path, "shard:\n  datasets: [coco, imagenet]\n"))


def test_env_override_beats_file(tmp_path, monkeypatch):
    path = write(tmp_path, "shard:\n  max_bad_fraction: 0.01\n")
    monkeypatch.setenv("SOHO_SHARD__MAX_BAD_FRACTION", "0.25")
    assert load_params(path).shard.max_bad_fraction == 0.25
    monkeypatch.setenv("SOHO_SHARD__MAX_BAD_FRACTION", "2")
    with pytest.raises(ConfigError, match=r"shard\.max_bad_fraction"):
        load_params(path)


def test_paper_profile_overlay(tmp_path, monkeypatch):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "paper.yaml").write_text("shard:\n  max_samples_per_shard: 999\n")
    path = write(tmp_path, "profile: embedded\nshard:\n  max_samples_per_shard: 5\n")
    assert load_params(path).shard.max_samples_per_shard == 5
    assert load_params(path, profile="paper").shard.max_samples_per_shard == 999
    monkeypatch.setenv("SOHO_PROFILE", "paper")
    assert load_params(path).profile == "paper"
    monkeypatch.setenv("SOHO_PROFILE", "laptop")
    with pytest.raises(ConfigError, match=r"profile: must be one of .*'laptop'"):
        load_params(path)


def test_repo_paper_profile_validates():
    assert load_params(REPO / "params.yaml", profile="paper").shard.max_samples_per_shard == 2000


def test_embedded_only_shortcuts_do_not_reach_the_paper_profile():
    embedded, paper = load_params(REPO / "params.yaml"), load_params(REPO / "params.yaml", profile="paper")
    assert embedded.model.text.freeze_word_embeddings and not paper.model.text.freeze_word_embeddings
    assert embedded.finetune.video_size == 64 and paper.finetune.video_size == 224  # SCL cfg _config_lsmdc
    assert embedded.finetune.optim.checkpoint_every == 0 and paper.finetune.optim.checkpoint_every == 1000


def test_a_frozen_word_table_must_be_a_pretrained_one(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.text: .*freeze_word_embeddings.*init: none"):
        load_params(write(tmp_path, "model:\n  text:\n    init: none\n    freeze_word_embeddings: true\n"))


def test_mp4_clips_need_an_even_size_as_h264_does(tmp_path):
    with pytest.raises(ConfigError, match=r"data: .*clip_size: 65 is odd; H\.264 \(clip_format: mp4\)"):
        load_params(write(tmp_path, "data:\n  clip_format: mp4\n  clip_size: 65\n"))
    assert load_params(write(tmp_path, "data:\n  clip_format: gif\n  clip_size: 65\n")).data.clip_size == 65


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(write(tmp_path, "shard: [unclosed\n"))


def test_scl_variant_applies_its_overrides_and_rejects_what_would_break_the_comparison():
    from soho.config import PretrainSclParams
    from soho.train.variants import variant_params

    def with_scl_overrides(overrides):
        return params.model_copy(update={"pretrain_scl": PretrainSclParams(overrides=overrides)})

    params = load_params(REPO / "params.yaml")
    assert variant_params(params, "soho") is params
    scl = variant_params(params, "scl")
    assert scl.pretrain.objectives.scl > 0 and scl.pretrain.objectives.itc > 0
    assert params.pretrain.objectives.scl == 0  # SOHO itself is left as it was
    assert scl.model == params.model and scl.pretrain.optim == params.pretrain.optim
    off = with_scl_overrides({"pretrain.objectives.itc": 1.0})
    with pytest.raises(ConfigError, match=r"pretrain_scl.overrides: must switch SCL on"):
        variant_params(off, "scl")
    model = with_scl_overrides({"model.vd.size": 16, "pretrain.objectives.scl": 1.0})
    with pytest.raises(ConfigError, match=r"pretrain_scl.overrides: only pretrain.\* keys .*model.vd.size"):
        variant_params(model, "scl")
    no_itc = with_scl_overrides({"pretrain.objectives.scl": 1.0})
    with pytest.raises(ConfigError, match=r"(?s)pretrain_scl.overrides.*itc must be > 0"):
        variant_params(no_itc, "scl")
    with pytest.raises(ConfigError, match="'clip'"):
        variant_params(params, "clip")


def test_no_variant_or_no_soho_variant_in_finetune_variants_is_an_error(tmp_path):
    """Issue 15: ``finetune.variants: []`` trained nothing, and ``validate`` then passed on chance alone."""
    with pytest.raises(ConfigError, match=r"finetune\.variants: Value error, must include 'pretrained'.*\(got \[\]\)"):
        load_params(write(tmp_path, "finetune:\n  variants: []\n"))
    with pytest.raises(ConfigError, match=r"finetune\.variants: .*must include 'pretrained'.*\(got \['scratch'\]\)"):
        load_params(write(tmp_path, "finetune:\n  variants: [scratch]\n"))
    with pytest.raises(ConfigError, match=r"finetune: Value error, tasks\.vqa\.variants: .*must include 'pretrained'"):
        load_params(write(tmp_path, "finetune:\n  tasks: {vqa: {variants: [scratch]}}\n"))
    assert load_params(write(tmp_path, "finetune:\n  variants: [pretrained]\n")).finetune.variants == ("pretrained",)
