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


def test_itc_perfect_alignment_beats_shuffled_and_counts_same_image_captions_as_positives():
    from soho.objectives import itc

    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)
    scale = torch.tensor(1 / 0.07).log()
    aligned, acc, _ = itc.itc_loss(image, image.clone(), scale)
    shuffled, shuffled_acc, _ = itc.itc_loss(image, image[torch.randperm(6)], scale)
    assert aligned < shuffled and acc == 1.0 and shuffled_acc < 1.0
    # rows 0 and 1 are two captions of one image: swapping them must not matter with ``same``
    same = torch.eye(6, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True
    images = image.clone()
    images[1] = image[0]
    swapped = image[[1, 0, 2, 3, 4, 5]]
    with_same = [itc.itc_loss(images, t, scale, same)[0] for t in (image, swapped)]
    assert torch.allclose(with_same[0], with_same[1])
    # row 1 ranks caption 0 first: right with ``same``, wrong without
    assert itc.itc_loss(images, image, scale, same)[1] == 1.0
    assert itc.itc_loss(images, image, scale)[1] < 1.0


def test_mean_pooling_varies_with_input_where_minilm_cls_does_not():
    """Regression: the MiniLM [CLS] state is nearly constant, which stalled ITM at exactly 0.5."""
    from soho.models.fusion import CrossModalEncoder, load_tokenizer

    tokenizer = load_tokenizer("minilm")
    batch = tokenizer(
        ["a red circle", "two blue squares below a green triangle", "one shape in white"],
        padding=True,
        return_tensors="pt",
    )
    spreads = {}
    for pooling in ("cls", "mean"):
        encoder = CrossModalEncoder("minilm", 2, pooling=pooling).eval()
        with torch.no_grad():
            hidden = encoder(encoder.embed_text(batch["input_ids"]), batch["attention_mask"], None)
            summary = hidden[:, 0] if pooling == "cls" else (hidden * batch["attention_mask"][..., None]).sum(1)
            pooled = encoder.pool(hidden, batch["attention_mask"])
        spreads[pooling] = (summary.std(0).mean() / summary.std()).item()
        assert pooled.shape == (3, encoder.hidden)
    assert spreads["mean"] > 20 * spreads["cls"]
