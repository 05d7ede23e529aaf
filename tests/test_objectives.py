import torch

from soho.objectives import itm, mlm, mvm


def test_mvm_masks_every_token_sharing_the_chosen_index():
    indices = torch.tensor([[3, 1, 3, 2, 3, 1], [5, 5, 5, 5, 0, 0]])
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        masked = mvm.choose_masked_tokens(indices, probability=1.0, generator=generator)
        for row, mask in zip(indices, masked, strict=True):
            chosen = row[mask].unique()
            assert len(chosen) == 1  # one visual word per image
            assert torch.equal(mask, row == chosen)  # ... and all of its tokens
    assert not mvm.choose_masked_tokens(indices, probability=0.0).any()


def test_mvm_loss_only_on_masked_tokens():
    indices = torch.tensor([[0, 1]])
    logits = torch.tensor([[[10.0, -10.0], [10.0, -10.0]]])
    loss, acc = mvm.mvm_loss(logits, indices, torch.tensor([[True, False]]))
    assert loss < 1e-3 and acc == 1.0
    loss, acc = mvm.mvm_loss(logits, indices, torch.tensor([[False, True]]))
    assert loss > 10 and acc == 0.0


def test_mlm_masking_follows_bert_rules():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (64, 32))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    masked, labels = mlm.mask_tokens(ids, special, mask_id=103, vocab_size=30522, probability=0.15, generator=generator)
    chosen = labels != -100
    assert not chosen[special].any()
    assert torch.equal(labels[chosen], ids[chosen])
    rate = chosen.float().mean().item()
    assert 0.12 < rate < 0.18
    became_mask = (masked[chosen] == 103).float().mean().item()
    kept = (masked[chosen] == ids[chosen]).float().mean().item()
    assert 0.72 < became_mask < 0.88 and 0.04 < kept < 0.17
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_itm_negatives_never_the_pair_itself_and_prefer_similar():
    similarity = torch.tensor([[9.0, 8.0, -9.0], [8.0, 9.0, -9.0], [0.0, 0.0, 9.0]])
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([itm.sample_negatives(similarity, generator=generator) for _ in range(200)])
    assert (draws != torch.arange(3)).all()
    assert (draws[:, 0] == 1).float().mean() > 0.95  # the hard negative dominates
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    draws = torch.stack([itm.sample_negatives(similarity, same, generator) for _ in range(50)])
    assert (draws[:, 0] == 2).all() and (draws[:, 1] == 2).all()
