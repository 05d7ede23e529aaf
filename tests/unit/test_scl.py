"""Semantic Completion Learning as the official ``compute_scl``: loss, masks, features, switch, clips."""

import math

import pytest
import torch

from soho.config import ConfigError, ObjectiveParams, load_params, with_overrides
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.objectives import scl
from soho.objectives.pretraining import pretraining_step, semantic_completion

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
    assert image.shape == text.shape == (4, model.hidden)  # fused states: no pooler, no projection


def test_scl_keeps_visual_tokens_from_every_frame_of_a_clip():
    frames, cells = 4, 9
    kept = scl.kept_visual_tokens(64, frames * cells, 0.8, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert kept.shape == (64, int(36 * (1 - 0.8)))
    assert set((kept // cells).unique().tolist()) == set(range(frames))


def _official_norm_softmax(completed: torch.Tensor, target: torch.Tensor, temperature: float) -> float:
    """IIGROUP/SCL's NormSoftmaxLoss written out with Python floats: -mean log p(row) - mean log p(column)."""
    a = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in completed.tolist()]
    b = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in target.tolist()]
    sim = [[sum(x * y for x, y in zip(ra, rb, strict=True)) / temperature for rb in b] for ra in a]
    n = len(sim)
    rows = sum(sim[i][i] - math.log(sum(math.exp(s) for s in sim[i])) for i in range(n)) / n
    cols = sum(sim[i][i] - math.log(sum(math.exp(sim[k][i]) for k in range(n))) for i in range(n)) / n
    return -rows - cols


def test_scl_loss_is_the_official_formula():
    completed = torch.tensor([[1.0, 0.2, 0.0], [0.1, 1.0, 0.3], [0.5, 0.5, 0.5]])
    target = torch.tensor([[0.9, 0.1, 0.1], [0.0, 2.0, 0.0], [0.2, 0.1, 0.8]])  # unnormalised on purpose
    loss, accuracy = scl.scl_loss(completed, target)
    assert loss.item() == pytest.approx(_official_norm_softmax(completed, target, 0.03), rel=1e-5)
    assert accuracy.item() == pytest.approx(1.0)


def test_text_masking_puts_the_mask_token_on_official_positions_only():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([12, 7, 3, 2])
    ids = torch.randint(1000, 2000, (4, 12), generator=generator)
    attention = (torch.arange(12)[None] < lengths[:, None]).long()
    changed = torch.zeros(4, 12)
    for _ in range(200):
        masked = scl.mask_text(ids, attention, 0.4, 103, generator)
        diff = masked != ids
        assert (masked[diff] == 103).all()  # no random or kept tokens: every masked token is the mask
        for row, n in enumerate(lengths.tolist()):
            draws = int((n - 2) * 0.4) + 1 if n > 2 else 0
            assert 1 <= diff[row].sum() <= draws or draws == 0 and diff[row].sum() == 0
        changed += diff
    for row, n in enumerate(lengths.tolist()):
        assert changed[row, 0] == 0 and (changed[row, max(n - 1, 1) :] == 0).all()  # [CLS], [SEP], padding
        assert (changed[row, 1 : n - 1] > 0).all()  # every inner position can be drawn


@pytest.mark.parametrize("grid, kept", [(2, 1), (3, 1), (4, 3), (16, 51)])
def test_vision_drops_eighty_percent_of_the_cells(grid, kept):
    """int(N * 0.2) as the official random_masking: a 3x3 grid keeps one cell; 2x2 (official: none) keeps one."""
    indices = scl.kept_visual_tokens(5, grid * grid, 0.8, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert indices.shape == (5, kept)
    assert all(len(set(row)) == kept for row in indices.tolist())


def test_masked_vision_pass_has_only_the_kept_tokens_with_their_cells_positions(model):
    batch, _ = _batch(None)
    visual, _, layout = model.encode_image(batch["pixels"])
    model.eval()  # no dropout: the two routes must agree exactly
    try:
        kept = torch.tensor([[3], [0], [2], [1]])
        hidden = model.fuse(batch["input_ids"], batch["attention_mask"], visual, layout, visual_kept=kept)
        assert hidden.shape[1] == batch["input_ids"].shape[1] + 1
        embedded = model.visual_embeddings(visual, layout)[torch.arange(4), kept[:, 0]][:, None]
        text = model.fusion.embed_text(batch["input_ids"])
        expected = model.fusion(text, batch["attention_mask"], embedded)
        assert torch.allclose(hidden, expected, atol=1e-5)
    finally:
        model.train()


def test_cls_pooling_takes_the_visual_mean_not_the_top_left_cell():
    """With ``pooling: cls`` the masked-vision feature used to be BertPooler of the first visual token."""
    torch.manual_seed(0)
    spec = tiny_model(embed_dim=32)
    spec = spec.model_copy(update={"text": spec.text.model_copy(update={"pooling": "cls"})})
    cls_model = SohoModel(spec)
    text_mask = torch.ones(2, 5, dtype=torch.long)
    hidden = torch.randn(2, 5 + 9, cls_model.hidden)
    image, _ = cls_model.completed_embeddings(hidden, text_mask)
    moved = hidden.clone()
    moved[:, 5 + 4] += 3.0  # the centre cell of a 3x3 grid
    image_moved, _ = cls_model.completed_embeddings(moved, text_mask)
    assert not torch.allclose(image, image_moved)
    assert torch.allclose(image, hidden[:, 5:].mean(1))


def test_scl_sums_the_vision_and_text_losses(model):
    batch, tokenizer = _batch(None)
    visual, _, layout = model.encode_image(batch["pixels"])
    weights = ObjectiveParams(itc=1.0, scl=1.0)
    loss, parts = semantic_completion(
        model, batch, visual, layout, weights, tokenizer.mask_token_id, torch.Generator().manual_seed(0)
    )
    assert torch.isclose(loss, parts["scl_vision_loss"] + parts["scl_text_loss"])


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
    layer = model.fusion.bert.encoder.layer[0].output.dense.weight
    assert layer.grad is not None and layer.grad.abs().sum() > 0
    model.zero_grad()


def test_scl_without_itc_is_a_config_error():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ConfigError, match="scl: .*itc must be > 0"):
        with_overrides(params, {"pretrain.objectives.scl": 1.0, "pretrain.objectives.itc": 0.0})
    assert (
        with_overrides(params, {"pretrain.objectives.scl": 1.0, "pretrain.objectives.itc": 1.0}).pretrain.objectives.scl
        == 1.0
    )
