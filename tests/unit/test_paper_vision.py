"""SOHO's vision input and CNN optimiser (paper profile) beside the embedded profile's, which stays as it was.

Official facts (researchmm/soho, configs/Pretrain/soho_res18_pre.py): keep-ratio resize to
(1000, 600) padded to 32, the padding mask resized to the grid, 2-D sine positions in the
neck, ResNet frozen_stages=1, AdamwSGD (CNN SGD lr 1e-2 momentum 0.9 wd 1e-4), gradients of
all parameters clipped at 10, lr x0.1 at epochs 25 and 35 of 40.
"""

import math

import pytest
import torch
from PIL import Image

from soho.config import ModelParams, ObjectiveParams, OptimParams, VisionParams, load_params
from soho.data import loaders
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.models.vision import VisualEmbeddings, grid_mask, sine_positions
from soho.models.visual_dictionary import VisualDictionary
from soho.objectives import mvm, pretraining
from soho.objectives.pretraining import pretraining_step
from soho.train.loop import Trainer, build_optimizer, lr_factor
from soho.train.variants import variant_params

from ..conftest import REPO, tiny_model


def test_embedded_profile_keeps_square_input_learned_positions_and_adamw():
    """The embedded bands were made with these: the new options must default off there.

    (Not a pinned-loss check: float losses differ between CPU kernels, so a bitwise value would
    only hold on the machine that wrote it.)
    """
    params = load_params(REPO / "params.yaml", "embedded")
    vision, optim = params.model.vision, params.pretrain.optim
    assert (vision.resize, vision.position, vision.frozen_stages) == ("square", "learned", 0)
    assert (optim.cnn_optimizer, optim.schedule) == ("adamw", "linear")
    assert grid_mask(None, (1, 3, 3)) is None  # no padding mask: every cell is real, no mask reaches fuse


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(300, 150, (500, 1000)), (100, 400, (1000, 250)), (120, 90, (600, 800)), (300, 180, (600, 1000))],
)
def test_keep_ratio_resize_short_side_600_long_side_at_most_1000(width, height, expected):
    image = Image.new("RGB", (width, height))
    assert tuple(loaders.image_transform(600, "keep_ratio", 1000)(image).shape) == (3, *expected)
    assert tuple(loaders.image_transform(600)(image).shape) == (3, 600, 600)  # square stays the default


def test_collate_pads_to_the_batch_maximum_and_masks_the_padding():
    tokenizer = load_tokenizer("minilm")
    small, wide = torch.ones(3, 40, 70), torch.ones(3, 64, 30)
    samples = [{"pixels": small, "text": "a"}, {"pixels": wide, "text": "b"}]
    batch = loaders.text_collate(tokenizer, 8, pad=True)(samples)
    assert batch["pixels"].shape == (2, 3, 64, 96)  # the largest sides, rounded up to 32
    mask = batch["pixel_mask"]
    assert mask[0, :40, :70].all() and not mask[0, 40:].any() and not mask[0, :, 70:].any()
    assert mask[1, :, :30].all() and not mask[1, :, 30:].any()
    assert (batch["pixels"][~mask[:, None].expand_as(batch["pixels"])] == 0).all()
    assert torch.equal(loaders.unpad(batch, 0), small)
    square = loaders.text_collate(tokenizer, 8)([{"pixels": small, "text": "a"}] * 2)
    assert "pixel_mask" not in square


def test_padding_mask_reaches_the_grid_and_padded_cells_get_no_attention():
    torch.manual_seed(0)
    model = SohoModel(tiny_model(vd=8)).eval()
    pixels = torch.randn(2, 3, 64, 128)
    pixel_mask = torch.ones(2, 64, 128, dtype=torch.bool)
    pixel_mask[1, :, 64:] = False  # the second image is 64 x 64, padded on the right
    visual, _, layout = model.encode_image(pixels, pixel_mask)
    valid = grid_mask(pixel_mask, layout)
    assert layout == (1, 2, 4)
    assert valid[0].all() and valid[1].tolist() == [True, True, False, False] * 2
    ids = torch.tensor([[101, 2003, 102]] * 2)
    attention = torch.ones_like(ids)
    with torch.no_grad():
        hidden = model.fuse(ids, attention, visual, layout, visual_valid=valid)
        noisy = visual.clone()
        noisy[~valid] = torch.randn_like(noisy[~valid]) * 100  # whatever the padded cells hold...
        again = model.fuse(ids, attention, noisy, layout, visual_valid=valid)
    real = torch.cat([torch.ones(2, 3, dtype=torch.bool), valid], 1)
    assert torch.allclose(hidden[real], again[real], atol=1e-5)  # ... no real token sees them
    pooled, pooled_again = model.pool(hidden, attention, valid), model.pool(again, attention, valid)
    assert torch.allclose(pooled, pooled_again, atol=1e-5)  # nor does the pooled feature


def test_padded_cells_neither_move_the_vd_nor_are_chosen_for_mvm():
    vd = VisualDictionary(4, 2, momentum=0.5).train()
    vd.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    vd.initialised.fill_(True)
    features = torch.tensor([[[0.1, 0.0], [50.0, 50.0]]])
    vd(features, torch.tensor([[True, False]]))
    assert torch.allclose(vd.embedding[3], torch.tensor([1.0, 1.0]))  # the padded cell's entry stayed
    assert torch.allclose(vd.embedding[0], torch.tensor([0.05, 0.0]))
    indices = torch.zeros(3, 6, dtype=torch.long)
    valid = torch.tensor([[True] * 3 + [False] * 3] * 3)
    masked = mvm.choose_masked_tokens(indices, 1.0, torch.Generator().manual_seed(0), valid)
    assert torch.equal(masked, valid)


def test_sine_positions_are_detr_codes_over_real_cells():
    codes = sine_positions(torch.ones(1, 1, 2, dtype=torch.bool), 4)
    assert codes.shape == (1, 1, 2, 4)
    # rows: y = 2 pi everywhere; columns: x = pi, 2 pi; channels (sin y, cos y, sin x, cos x)
    assert torch.allclose(codes[0, 0], torch.tensor([[0.0, 1.0, 0.0, -1.0], [0.0, 1.0, 0.0, 1.0]]), atol=1e-4)
    padded = sine_positions(torch.tensor([[[True, True, False]]]), 4)
    assert torch.allclose(padded[0, 0, :2], codes[0, 0], atol=1e-4)  # padding does not shift the real cells' codes
    assert sine_positions(torch.ones(3, 5, 7, dtype=torch.bool), 16).shape == (3, 5, 7, 16)
    dim_t = 10000 ** (2 * (torch.arange(8) // 2) / 8)
    x = 2 * math.pi * 3 / 7
    expected = torch.stack([(x / dim_t[0::2]).sin(), (x / dim_t[1::2]).cos()], 1).flatten()
    assert torch.allclose(sine_positions(torch.ones(1, 1, 7, dtype=torch.bool), 16)[0, 0, 2, 8:], expected, atol=1e-5)
    sine = VisualEmbeddings(16, 4, 2, position="sine")
    assert not hasattr(sine, "row") and sine(torch.zeros(2, 6, 16), (1, 2, 3)).shape == (2, 6, 16)


def test_sgd_for_the_cnn_with_the_stem_and_layer1_frozen():
    torch.manual_seed(0)
    spec = tiny_model().model_copy(update={"vision": VisionParams(frozen_stages=1)})
    model = SohoModel(spec).train()
    trunk = model.vision.trunk
    frozen = list(trunk[0].parameters()) + list(trunk[1].parameters()) + list(trunk[4].parameters())
    assert frozen and not any(p.requires_grad for p in frozen)
    assert not trunk[1].training and not trunk[4][0].bn1.training and trunk[5][0].bn1.training  # frozen BN stats
    cfg = OptimParams(cnn_optimizer="sgd", cnn_lr=0.01, cnn_momentum=0.9, cnn_weight_decay=1e-4, lr=1e-4)
    groups = model.trainable_groups()
    optimizer = build_optimizer(groups, cfg)
    (sgd,) = [g for g in optimizer.param_groups if g["name"] == "cnn"]
    assert (sgd["lr"], sgd["momentum"], sgd["weight_decay"]) == (0.01, 0.9, 1e-4)
    assert {id(p) for p in sgd["params"]} == {id(p) for p in groups["cnn"]}
    assert not {id(p) for p in frozen} & {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert {g["name"] for g in optimizer.param_groups} == {"cnn", "transformer", "transformer_no_decay"}
    weight = groups["cnn"][0]
    before, grad = weight.detach().clone(), torch.randn_like(weight)
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    weight.grad = grad.clone()
    optimizer.step()
    assert torch.allclose(weight.detach(), before - 0.01 * (grad + 1e-4 * before))  # SGD's first step
    state = optimizer.state_dict()
    fresh = build_optimizer(groups, cfg)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.optimizers[0].state[weight]["momentum_buffer"], grad + 1e-4 * before)


def test_step_schedule_decays_tenfold_at_62_5_and_87_5_percent():
    factor = lr_factor(OptimParams(steps=80, warmup_steps=4, schedule="step"))
    assert [factor(s) for s in (0, 3, 4, 49)] == [0.25, 1.0, 1.0, 1.0]
    assert factor(50) == pytest.approx(0.1) and factor(69) == pytest.approx(0.1)
    assert factor(70) == pytest.approx(0.01) and factor(79) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="ascending"):
        OptimParams(decay_at=(0.9, 0.5))


def test_paper_profile_takes_soho_vision_and_optimiser(monkeypatch):
    monkeypatch.setenv("SOHO_PROFILE", "paper")
    params = load_params(REPO / "params.yaml", profile="paper")
    vision, optim = params.model.vision, params.pretrain.optim
    assert (params.model.image_size, vision.resize, vision.max_long_side) == (600, "keep_ratio", 1000)
    assert (vision.position, vision.frozen_stages) == ("sine", 1)
    assert (optim.cnn_optimizer, optim.cnn_lr, optim.cnn_momentum, optim.cnn_weight_decay) == ("sgd", 0.01, 0.9, 1e-4)
    assert (optim.lr, optim.weight_decay, optim.clip) == (1e-4, 0.01, 10.0)
    assert (optim.schedule, optim.decay_at, optim.decay_factor) == ("step", (0.625, 0.875), 0.1)
    assert params.pretrain.objectives.itm_negatives == "soho"  # ITM on the masked forward, as SOHO's code
    assert variant_params(params, "scl").pretrain.objectives.itm_negatives == "scl"  # SCL's random false images
    monkeypatch.delenv("SOHO_PROFILE")
    embedded = load_params(REPO / "params.yaml")
    assert embedded.pretrain.objectives.itm_negatives == "albef"  # its bands' pairs
    assert variant_params(embedded, "scl").pretrain.objectives.itm_negatives == "scl"  # in both profiles
    assert ModelParams().vision.resize == "square" and ModelParams().vision.position == "learned"


def test_clipping_bounds_the_norm_of_all_parameters_together():
    """SOHO clips the gradients of the whole model (CNN and Transformer) to one norm."""
    cnn, rest = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn, self.rest = cnn, rest

        def forward(self, batch):
            return {"loss": 1e4 * (self.cnn(batch["x"]).sum() + self.rest(batch["x"]).sum())}

    cfg = OptimParams(steps=1, warmup_steps=0, clip=10.0, cnn_optimizer="sgd", checkpoint_every=0, amp=False)
    groups = {"cnn": list(cnn.parameters()), "transformer": list(rest.parameters())}
    trainer = Trainer(Toy(), groups, cfg, 0, None, progress=False)
    norms = []
    trainer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: norms.append(float(torch.cat([p.grad.flatten() for p in Toy().parameters()]).norm()))
    )
    trainer.fit(lambda epoch: [{"x": torch.ones(2, 4)}])
    assert norms == [pytest.approx(10.0, rel=1e-4)]


def test_vqa_trains_multi_scale_as_soho_and_scores_at_600_by_1000(monkeypatch):
    """SOHO's VQA cfg: training Resize img_scale [(1333, 400), (1333, 800)] keep_ratio (mmdet 'range': the short
    side a uniform integer in [400, 800], the long side at most 1333); test (1000, 600), as evaluation here."""
    monkeypatch.delenv("SOHO_PROFILE", raising=False)
    params = load_params(REPO / "params.yaml", "paper")
    vqa = params.finetune.for_task("vqa")
    assert (vqa.train_scales, vqa.train_max_long_side) == ((400, 800), 1333)
    assert params.finetune.for_task("nlvr2").train_scales is None  # the other tasks: no multi-scale config exists
    training = loaders.LoaderSpec.build(REPO, None, params.model, 0, optim=vqa.optim, finetune=vqa)
    scoring = loaders.LoaderSpec.build(REPO, None, params.model, 0, batch_size=4, finetune=vqa)
    torch.manual_seed(0)
    wide = Image.new("RGB", (640, 480))
    shapes = {tuple(training.transform()(wide).shape[1:]) for _ in range(40)}
    assert len(shapes) > 20  # a new size nearly every time
    for height, width in shapes:
        assert 400 <= height <= 800 and abs(width / height - 4 / 3) < 0.01
    panorama = training.transform()(Image.new("RGB", (2000, 400)))
    assert panorama.shape[2] == 1333 and panorama.shape[1] < 400  # the long side's cap wins
    assert tuple(scoring.transform()(wide).shape[1:]) == (600, 800)  # evaluation: one scale


def test_multi_scale_needs_keep_ratio_and_room_for_its_largest_side():
    from soho.config import ConfigError, Params, with_overrides

    base = Params()
    with pytest.raises(
        ConfigError, match=r"finetune\.tasks\.vqa\.train_scales: \[400, 800\] needs model\.vision\.resize"
    ):
        with_overrides(base, {"finetune.tasks": {"vqa": {"train_scales": [400, 800]}}}, source="test")
    keep_ratio = {"model.vision.resize": "keep_ratio", "model.image_size": 64, "model.vision.max_long_side": 128}
    with pytest.raises(ConfigError, match=r"train_max_long_side: 300 is below the largest short side 400"):
        with_overrides(base, {**keep_ratio, "finetune.train_scales": [64, 400], "finetune.train_max_long_side": 300})
    with pytest.raises(ConfigError, match=r"need 32 <= low <= high"):
        with_overrides(base, {**keep_ratio, "finetune.train_scales": [90, 80]}, "t")
    with pytest.raises(
        ConfigError, match=r"train_max_long_side: 1333 px gives 42 grid cells, above model\.vision\.max_grid 16"
    ):
        with_overrides(base, {**keep_ratio, "finetune.train_scales": [48, 80]}, "t")
    with pytest.raises(ConfigError, match=r"vision\.max_grid: 16 is below the 32 grid cells of the long side"):
        with_overrides(base, {**keep_ratio, "model.vision.max_long_side": 1000}, "t")
    multi_scale = with_overrides(
        base, {**keep_ratio, "finetune.train_scales": [48, 80], "finetune.train_max_long_side": 160}, "t"
    )
    assert multi_scale.finetune.train_scales == (48, 80)


def _padded_batch() -> dict[str, torch.Tensor]:
    """Four captions of four padded images; image i keeps 4 - i of its 4 grid columns, so every mask is its own."""
    pixel_mask = torch.ones(4, 64, 128, dtype=torch.bool)
    for image in range(1, 4):
        pixel_mask[image, :, 128 - 32 * image :] = False
    ids = torch.tensor([[101, 2003, 2417, 102], [101, 2048, 3756, 102], [101, 1037, 4418, 102], [101, 2062, 2630, 102]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "image_key": torch.arange(4)}
    return batch | {"pixels": torch.randn(4, 3, 64, 128), "pixel_mask": pixel_mask}


def test_soho_itm_on_padded_images_keeps_each_images_padding_mask(monkeypatch):
    """SOHO's ITM swaps captions, not images: ITM pools each row over its own image's real cells."""
    torch.manual_seed(0)
    model = SohoModel(tiny_model(vd=8)).eval()
    batch = _padded_batch()
    pixel_mask = batch["pixel_mask"]
    seen = []
    itm_logits = model.itm_logits
    monkeypatch.setattr(
        model, "itm_logits", lambda hidden, mask, valid=None: seen.append(valid) or itm_logits(hidden, mask, valid)
    )
    labels = []
    swap = pretraining.swapped_captions

    def recorded_swap(*args):  # one call: the labels recorded are those the step uses
        swapped = swap(*args)
        labels.append(swapped[2])
        return swapped

    monkeypatch.setattr(pretraining, "swapped_captions", recorded_swap)
    weights = ObjectiveParams(mlm=1.0, mvm=1.0, itm=1.0, itm_negatives="soho")
    with torch.no_grad():
        out = pretraining_step(model, batch, weights, torch.tensor([101, 102]), 103, torch.Generator().manual_seed(0))
    assert (labels[0] == 0).any()  # some captions were swapped...
    assert len(seen) == 1 and torch.equal(seen[0], grid_mask(pixel_mask, (1, 2, 4)))  # ... the masks were not
    assert torch.isfinite(out["itm_loss"])


def test_scl_itm_on_padded_images_moves_each_padding_mask_with_its_image(monkeypatch):
    """SCL's ITM shows some captions another image: that row's fusion and pooling read that image's real cells."""
    torch.manual_seed(0)
    model = SohoModel(tiny_model(vd=8)).eval()
    batch = _padded_batch()
    pixel_mask = batch["pixel_mask"]
    fused, pooled = [], []
    fuse, itm_logits = model.fuse, model.itm_logits
    monkeypatch.setattr(model, "fuse", lambda *a, **k: fused.append(k.get("visual_valid")) or fuse(*a, **k))
    monkeypatch.setattr(
        model, "itm_logits", lambda hidden, mask, valid=None: pooled.append(valid) or itm_logits(hidden, mask, valid)
    )
    weights = ObjectiveParams(mlm=0.0, mvm=0.0, itm=1.0, itm_negatives="scl")
    with torch.no_grad():
        out = pretraining_step(model, batch, weights, torch.tensor([101, 102]), 103, torch.Generator().manual_seed(0))
    cells = grid_mask(pixel_mask, (1, 2, 4))  # (4, 8): image i's real cells
    assert len(fused) == 1 and len(pooled) == 1  # ITM's own forward only (no MLM or MVM asked)
    shown = [next(i for i in range(4) if torch.equal(row, cells[i])) for row in fused[0]]  # whose mask each row got
    assert shown != [0, 1, 2, 3]  # half the captions were shown another image...
    assert sum(image == row for row, image in enumerate(shown)) == 2  # ... exactly B // 2 kept their own
    assert torch.equal(pooled[0], fused[0])  # ... and the pooling reads the mask the fusion read
    assert torch.isfinite(out["itm_loss"])
