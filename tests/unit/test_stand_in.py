"""The embedded profile's stand-in for ImageNet (``soho.train.stand_in``): it learns, it loads as
torchvision's file does, and the ``weights`` stage trains it only when what it depends on changed."""

from __future__ import annotations

import pytest
import torch

from soho.config import Params, with_overrides
from soho.data.download import DownloadError, RetryPolicy
from soho.data.weights import fetch_all
from soho.models.vision import build_resnet
from soho.train import stand_in, variants

# a short schedule on 32 px scenes (a 1 x 1 grid): seconds on 2 CPU cores, still enough to leave the
# random start behind
SHORT = {"images": 1024, "heldout": 256, "steps": 60, "batch_size": 32, "lr": 0.003, "warmup_steps": 6}
SMALL = {"data.image_size": 64, "model.image_size": 32}


def short_params(**backbone) -> Params:
    return with_overrides(Params(), SMALL | {f"backbone.{k}": v for k, v in (SHORT | backbone).items()})


@pytest.fixture(scope="module")
def trained() -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    return stand_in.train(short_params(), progress=False)


def test_the_stand_in_names_the_shapes_of_unseen_scenes_better_than_its_random_start(trained):
    _, metrics = trained
    assert metrics["heldout_map"] > metrics["untrained_map"] + 0.1, metrics
    assert 0.0 <= metrics["heldout_exact"] <= 1.0


def test_its_labels_are_the_scene_objects_colour_and_shape():
    import random

    images, labels = stand_in.labelled_scenes(20, random.Random(0), 128, 72, 3)
    assert images.shape == (20, 3, 72, 72) and labels.shape == (20, 24)
    counts = labels.sum(1)
    assert counts.min() >= 1 and counts.max() <= 3  # 1..max_objects things, two may share a class
    again_images, again_labels = stand_in.labelled_scenes(20, random.Random(0), 128, 72, 3)
    assert torch.equal(images, again_images) and torch.equal(labels, again_labels)


def test_the_stand_in_file_loads_through_the_strict_torchvision_loader(trained, tmp_path):
    state, _ = trained
    file = tmp_path / "stand-in.pth"
    torch.save(state, file)
    trunk, channels = build_resnet("resnet", [1, 1, 1, 1], file)
    assert channels == 512
    assert torch.equal(trunk[0].weight, state["conv1.weight"])
    assert torch.equal(trunk[7][0].bn2.running_mean, state["layer4.0.bn2.running_mean"])


def test_make_keeps_its_weights_until_a_setting_or_the_file_changes(tmp_path, monkeypatch):
    params = short_params(steps=2, images=16, heldout=8)
    dest = tmp_path / "weights" / "stand-in.pth"
    first = stand_in.make(params, dest, None, progress=False)
    assert dest.is_file() and first["sha256"] and first["trained"] == "soho.train.stand_in"

    def refuse(*_args, **_kwargs):
        raise AssertionError("trained again although nothing it depends on changed")

    with monkeypatch.context() as patch:
        patch.setattr(stand_in, "train", refuse)
        assert stand_in.make(params, dest, first, progress=False) == first
    second = stand_in.make(short_params(steps=3, images=16, heldout=8), dest, first, progress=False)
    assert second["fingerprint"] != first["fingerprint"]
    dest.write_bytes(b"not the file the record names")
    third = stand_in.make(short_params(steps=3, images=16, heldout=8), dest, second, progress=False)
    assert third["sha256"] == second["sha256"]  # trained again: the same settings give the same bytes


def test_fetch_all_trains_the_reduced_resnet_and_refuses_without_a_stand_in(tmp_path):
    params = with_overrides(Params(), {"model.vision.weights": str(tmp_path / "weights" / "stand-in.pth")})
    policy = RetryPolicy(0, 0.0, 0.0, 1.0, 1024)
    with pytest.raises(DownloadError, match="model.vision.weights: .*stand-in.pth: the reduced 'resnet' arch"):
        fetch_all(params.model, tmp_path / "weights", policy, "http://127.0.0.1:9", "http://127.0.0.1:9")
    made = fetch_all(
        params.model,
        tmp_path / "weights",
        policy,
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        stand_in=lambda dest, previous: {"trained": "here", "dest": str(dest), "previous": previous},
    )
    dest = str(tmp_path / "weights" / "stand-in.pth")
    assert made == {"model.vision.weights": {"trained": "here", "dest": dest, "previous": None}}


def test_the_pretraining_fingerprint_follows_the_vision_weights_file(tmp_path, monkeypatch):
    monkeypatch.setattr(variants, "code_digest", lambda parts, root=None: "")
    file = tmp_path / "stand-in.pth"
    file.write_bytes(b"one")
    params = with_overrides(Params(), {"model.vision.weights": str(file), "paths.shards": str(tmp_path)})
    before = variants.fingerprint(params)
    file.write_bytes(b"two")
    assert variants.fingerprint(params) != before
