import torch

from soho.models.visual_dictionary import VisualDictionary


def test_assignment_is_brute_force_nearest_neighbour():
    torch.manual_seed(0)
    vd = VisualDictionary(32, 8)
    vd.embedding.normal_()
    features = torch.randn(4, 10, 8)
    brute = torch.stack([((f[:, None, :] - vd.embedding[None]) ** 2).sum(-1).argmin(-1) for f in features])
    assert torch.equal(vd.assign(features), brute)


def test_no_gradient_reaches_the_entries_but_features_train():
    vd = VisualDictionary(16, 4).eval()
    vd.embedding.normal_()
    features = torch.randn(2, 5, 4, requires_grad=True)
    quantised, indices = vd(features)
    assert torch.allclose(quantised, vd.embedding[indices])  # forward value is the entry
    upstream = torch.randn_like(quantised)
    quantised.backward(upstream)
    assert torch.equal(features.grad, upstream)  # straight-through to the CNN features
    assert not vd.embedding.requires_grad and "embedding" not in dict(vd.named_parameters())


def test_momentum_update_matches_formula():
    vd = VisualDictionary(3, 2, momentum=0.9, dead_after=1000)
    vd.embedding.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 5.0]]))
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0], [9.0, 11.0]])
    before = vd.embedding.clone()
    vd.update(features, vd.assign(features))
    expected = before.clone()
    expected[0] = 0.9 * before[0] + 0.1 * torch.tensor([0.5, 1.5])
    expected[1] = 0.9 * before[1] + 0.1 * torch.tensor([9.0, 11.0])
    assert torch.allclose(vd.embedding, expected)  # entry 2 had no features: unchanged
    assert vd.idle_steps.tolist() == [0, 0, 1]


def test_dead_entries_are_reseeded_from_features():
    vd = VisualDictionary(4, 2, momentum=0.5, dead_after=2)
    vd.embedding.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 200.0], [300.0, 300.0]]))
    features = torch.tensor([[0.1, 0.0], [0.0, 0.1]])
    for _ in range(2):
        vd.update(features, vd.assign(features))
    assert (vd.embedding[1:].abs() < 1).all()  # the three unused entries moved next to real features


def test_usage_statistics():
    stats = VisualDictionary.usage(torch.tensor([0, 1, 2, 3]), 8)
    assert abs(stats["vd_perplexity"] - 4.0) < 1e-5 and stats["vd_used_fraction"] == 0.5
    assert VisualDictionary.usage(torch.zeros(10, dtype=torch.long), 8)["vd_perplexity"] == 1.0


def small_soho():
    from soho.models.soho import SohoModel

    from ..conftest import tiny_model

    torch.manual_seed(0)
    return SohoModel(tiny_model())


def test_pretraining_token_is_the_raw_feature_plus_its_projected_entry():
    """SOHO's pre-training neck: feature + Linear(VD entry), not the entry alone."""
    model = small_soho().eval()
    pixels = torch.randn(2, 3, 64, 64)
    tokens, indices, _ = model.encode_image(pixels)
    features, _ = model.vision(pixels)
    expected = features + model.vd_proj(model.vd.embedding[indices])
    assert torch.allclose(tokens, expected, atol=1e-5)
    assert not torch.allclose(tokens, model.vd.embedding[indices], atol=1e-3)


def test_fine_tuning_bypasses_the_dictionary_and_leaves_it_unchanged():
    from soho.tasks import get
    from soho.tasks.model import TaskModel

    model = small_soho().train()
    model.encode_image(torch.randn(4, 3, 64, 64))  # initialise the entries as pre-training would
    entries = model.vd.embedding.clone()
    task = TaskModel(model, get("snli_ve")).train()
    pixels = torch.randn(4, 3, 64, 64)
    tokens, indices, _ = model.encode_image(pixels)
    features, _ = model.vision(pixels)
    assert indices is None and torch.equal(tokens, features)
    ids = torch.randint(1000, 2000, (4, 6))
    task({"pixels": pixels, "input_ids": ids, "attention_mask": torch.ones_like(ids), "label": torch.zeros(4).long()})
    assert torch.equal(model.vd.embedding, entries)


def test_fine_tuning_with_a_frozen_dictionary_quantises_and_leaves_it_unchanged():
    """finetune.vd: frozen, the other choice: pre-training's tokens, entries fixed (no EMA, no re-seeding)."""
    from soho.tasks import get
    from soho.tasks.model import TaskModel

    model = small_soho().train()
    model.encode_image(torch.randn(4, 3, 64, 64))
    entries, idle = model.vd.embedding.clone(), model.vd.idle_steps.clone()
    task = TaskModel(model, get("snli_ve"), vd="frozen").train()
    pixels = torch.randn(4, 3, 64, 64)
    tokens, indices, _ = model.encode_image(pixels)
    features, _ = model.vision(pixels)
    assert indices is not None and not torch.equal(tokens, features)  # feature + projected entry
    ids = torch.randint(1000, 2000, (4, 6))
    for _ in range(3):
        task(
            {"pixels": pixels, "input_ids": ids, "attention_mask": torch.ones_like(ids), "label": torch.zeros(4).long()}
        )
    assert torch.equal(model.vd.embedding, entries) and torch.equal(model.vd.idle_steps, idle)


def test_mvm_scores_are_cosines_with_the_current_entries():
    model = small_soho().eval()
    hidden = torch.randn(2, 5, model.hidden)
    scores = model.mvm_logits(hidden)
    assert scores.shape == (2, 5, 8) and scores.abs().max() <= 1 + 1e-5
    model.vd.embedding[3] = hidden[0, 0] * 7.0  # an entry moved (EMA / re-seeding): the head follows
    assert torch.isclose(model.mvm_logits(hidden)[0, 0, 3], torch.tensor(1.0), atol=1e-5)


def test_masked_visual_tokens_become_the_learned_mask_embedding():
    model = small_soho().eval()
    ids = torch.randint(1000, 2000, (1, 5))
    layout = (1, 2, 2)
    everything = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        a = model.fuse(ids, torch.ones_like(ids), torch.randn(1, 4, model.hidden), layout, everything)
        b = model.fuse(ids, torch.ones_like(ids), torch.randn(1, 4, model.hidden), layout, everything)
        model.mask_embedding.add_(torch.randn(model.hidden))
        c = model.fuse(ids, torch.ones_like(ids), torch.randn(1, 4, model.hidden), layout, everything)
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, c, atol=1e-3)
