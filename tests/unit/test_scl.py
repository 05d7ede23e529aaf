"""Semantic Completion Learning: the loss, its switch, and the flexible (image / clip) vision input."""

import pytest
import torch

from soho.config import ConfigError, ObjectiveParams, load_params, with_overrides
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.objectives import scl
from soho.objectives.pretraining import pretraining_step, scl_masks

from ..conftest import REPO, tiny_model


def _unit(rows: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_perfect_completion_scores_lowest_and_shuffled_targets_higher():
    target = _unit(8)
    perfect, perfect_acc = scl.scl_loss(target.clone(), target)
    noisy, _ = scl.scl_loss(torch.nn.functional.normalize(target + 0.3 * _unit(8, seed=1), dim=-1), target)
    shuffled, shuffled_acc = scl.scl_loss(target.clone(), target[torch.roll(torch.arange(8), 1)])
    assert perfect < noisy < shuffled
    assert perfect_acc == 1.0 and shuffled_acc == 0.0


def test_targets_get_no_gradient():
    completed, target = _unit(4).requires_grad_(), _unit(4, seed=2).requires_grad_()
    loss, _ = scl.scl_loss(completed, target)
    loss.backward()
    assert completed.grad is not None and completed.grad.abs().sum() > 0
    assert target.grad is None


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SohoModel(tiny_model(embed_dim=32))


def _batch(frames: int | None, size: int = 4):
    tokenizer = load_tokenizer("minilm")
    texts = ["a red circle", "two blue squares", "a green triangle left of a circle", "nothing here"][:size]
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    shape = (size, 3, 64, 64) if frames is None else (size, frames, 3, 64, 64)
    batch["pixels"] = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    batch["image_key"] = torch.arange(size)
    return batch, tokenizer


@pytest.mark.parametrize("frames", [None, 1, 3])
def test_shapes_for_an_image_and_for_clips(model, frames):
    batch, _ = _batch(frames)
    visual, indices, layout = model.encode_image(batch["pixels"])
    cells = 4  # a 64-pixel input gives a 2x2 grid
    expected_frames = 1 if frames is None else frames
    assert layout == (expected_frames, 2, 2)
    assert visual.shape == (4, expected_frames * cells, model.hidden) and indices.shape == (4, expected_frames * cells)
    hidden = model.fuse(batch["input_ids"], batch["attention_mask"], visual, layout)
    image, text = model.completed_embeddings(hidden, batch["attention_mask"])
    assert image.shape == text.shape == (4, 32)
    assert torch.allclose(image.norm(dim=-1), torch.ones(4), atol=1e-5)


def test_scl_masking_reaches_every_frame_of_a_clip():
    frames, cells = 4, 9
    input_ids = torch.randint(1000, 2000, (16, 12))
    _, visual_masked = scl_masks(
        input_ids,
        torch.ones_like(input_ids),
        torch.Size((16, frames * cells, 8)),
        0.4,
        torch.tensor([101, 102]),
        103,
        30522,
        torch.Generator().manual_seed(0),
    )
    assert visual_masked.shape == (16, frames * cells)
    per_frame = visual_masked.reshape(16, frames, cells).float().mean(dim=(0, 2))
    assert (per_frame > 0.2).all() and (per_frame < 0.6).all()


def _weighted_sum(out: dict, weights: ObjectiveParams) -> torch.Tensor:
    total = sum(
        getattr(weights, name) * out[f"{name}_loss"]
        for name in ("mlm", "mvm", "itm", "itc", "scl")
        if f"{name}_loss" in out
    )
    return torch.as_tensor(total)


@pytest.mark.parametrize("frames", [None, 2])
def test_switch_adds_or_removes_scl_from_the_total(model, frames):
    batch, tokenizer = _batch(frames)
    special = torch.tensor(tokenizer.all_special_ids)
    on = ObjectiveParams(mlm=1.0, mvm=0.5, itm=1.0, itc=1.0, scl=0.7)
    off = ObjectiveParams(mlm=1.0, mvm=0.5, itm=1.0, itc=1.0, scl=0.0)
    with_scl = pretraining_step(model, batch, on, special, tokenizer.mask_token_id, torch.Generator().manual_seed(0))
    without = pretraining_step(model, batch, off, special, tokenizer.mask_token_id, torch.Generator().manual_seed(0))
    assert "scl_loss" in with_scl and "scl_loss" not in without
    assert {"scl_vision_acc", "scl_text_acc"} <= set(with_scl)
    assert with_scl["scl_loss"] > 0
    assert torch.isclose(with_scl["loss"], _weighted_sum(with_scl, on), rtol=1e-4)
    assert torch.isclose(without["loss"], _weighted_sum(without, off), rtol=1e-4)
    with_scl["loss"].backward()  # the completion loss reaches the fusion encoder
    assert model.image_proj.weight.grad is not None and model.image_proj.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_scl_without_itc_is_a_config_error():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ConfigError, match="scl: .*itc must be > 0"):
        with_overrides(params, {"pretrain.objectives.scl": 1.0, "pretrain.objectives.itc": 0.0})
    assert (
        with_overrides(params, {"pretrain.objectives.scl": 1.0, "pretrain.objectives.itc": 1.0}).pretrain.objectives.scl
        == 1.0
    )
