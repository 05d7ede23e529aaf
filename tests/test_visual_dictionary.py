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
