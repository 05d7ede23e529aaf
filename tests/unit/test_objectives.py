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
    draws = torch.stack([itm.sample_negatives(similarity, generator=generator)[1] for _ in range(200)])
    assert (draws != torch.arange(3)).all()
    assert (draws[:, 0] == 1).float().mean() > 0.95  # the hard negative dominates
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    draws = torch.stack([itm.sample_negatives(similarity, same, generator)[1] for _ in range(50)])
    assert (draws[:, 0] == 2).all() and (draws[:, 1] == 2).all()


class _RecordingModel:
    """Stands in for SohoModel in ``itm_pairs``: records which text met which image."""

    def fuse(self, ids, mask, visual, layout, visual_valid=None):
        self.pairs = list(zip(ids[:, 0].tolist(), visual[:, 0, 0].long().tolist(), strict=True))
        return torch.zeros(len(ids), 1, 2)

    def itm_logits(self, hidden, mask, visual_valid=None):
        return torch.zeros(len(hidden), 2)


def _itm_batch(size: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Text i is token id i, image i a visual grid filled with i."""
    ids = torch.arange(size)[:, None].repeat(1, 3)
    visual = torch.arange(size, dtype=torch.float)[:, None, None].expand(size, 4, 2)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, visual


def test_itm_draws_a_negative_text_per_image_and_a_negative_image_per_text():
    from soho.objectives.pretraining import itm_pairs

    # texts 1 and 2 are captions of one image (so images 1 and 2 are that image twice): every
    # draw is forced, by the mask or by a similarity of 50 (softmax weight 1 - 1e-21)
    same = torch.tensor([[False, False, False], [False, True, True], [False, True, True]])
    similarity = torch.zeros(3, 3)  # (images, texts)
    similarity[0, 1] = 50.0  # image 0's negative text: text 1 (not 2)
    similarity[2, 0] = 50.0  # text 0's negative image: image 2 (not 1)
    batch, visual = _itm_batch(3)
    model = _RecordingModel()
    _, labels = itm_pairs(model, batch, visual, (1, 2, 2), similarity, same, torch.Generator().manual_seed(0))
    assert labels.tolist() == [1, 1, 1] + [0] * 6  # ALBEF: B positives, 2B negatives
    assert model.pairs[:3] == [(0, 0), (1, 1), (2, 2)]  # (text, image)
    assert model.pairs[3:6] == [(1, 0), (0, 1), (0, 2)]  # each image with a negative text
    assert model.pairs[6:] == [(0, 2), (1, 0), (2, 0)]  # each text with a negative image


def test_itm_on_a_one_sample_batch_trains_on_the_positive_alone():
    from soho.objectives.pretraining import itm_pairs

    rows, columns = itm.sample_negatives(torch.zeros(1, 1))
    assert rows.numel() == 0 and columns.numel() == 0  # no other sample to draw: no negative
    batch, visual = _itm_batch(1)
    model = _RecordingModel()
    logits, labels = itm_pairs(model, batch, visual, (1, 2, 2))
    assert model.pairs == [(0, 0)] and labels.tolist() == [1]
    loss, acc = itm.itm_loss(logits, labels)
    assert torch.isfinite(loss) and acc == 0.0  # zero logits: argmax says "no match"


def test_itm_accuracy_is_balanced_so_chance_stays_one_half():
    labels = torch.tensor([1, 1, 0, 0, 0, 0])
    always_no = torch.tensor([[1.0, 0.0]]).expand(6, 2)
    assert itm.itm_loss(always_no, labels)[1] == 0.5  # plain accuracy would be 4/6
    assert itm.itm_loss(torch.tensor([[0.0, 1.0]] * 2 + [[1.0, 0.0]] * 4), labels)[1] == 1.0


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


def test_soho_itm_swaps_about_half_the_captions_for_another_images():
    from soho.objectives.pretraining import swapped_captions

    # 60 images with two captions each: caption i is token id i, rows 2k and 2k+1 show image k
    image = torch.arange(120) // 2
    same = image[:, None] == image[None, :]
    ids = torch.arange(120)[:, None].repeat(1, 3)
    attention = torch.ones_like(ids)
    attention[:, 1:] = (torch.arange(120)[:, None] % 3 > torch.arange(2)).long()  # 1-3 real tokens by caption
    texts, mask, labels = swapped_captions(ids, attention, same, torch.Generator().manual_seed(0))
    source = texts[:, 0]
    kept = labels == 1
    assert torch.equal(source[kept], torch.arange(120)[kept])  # a matched row keeps its own caption
    assert (image[source[~kept]] != image[~kept]).all()  # a swapped one: a caption of another image
    assert 0.35 < (~kept).float().mean() < 0.65  # SOHO's coin: 1/2
    assert torch.equal(mask, attention[source])  # the attention mask travels with its caption
    # one image in the batch: nothing to swap with, every pair stays matched
    one = torch.ones(4, 4, dtype=torch.bool)
    _, _, labels = swapped_captions(ids[:4], torch.ones_like(ids[:4]), one, torch.Generator().manual_seed(0))
    assert labels.tolist() == [1, 1, 1, 1]


def test_scl_itm_shows_half_the_captions_a_false_image_never_one_of_their_own():
    from soho.objectives.pretraining import false_image_pairs

    # 60 images with two captions each: rows 2k and 2k+1 show image k (the visual grid holds k)
    size = 120
    image = torch.arange(size) // 2
    same = image[:, None] == image[None, :]
    batch, _ = _itm_batch(size)
    visual = image.float()[:, None, None].expand(size, 4, 2)
    model = _RecordingModel()
    _, labels = false_image_pairs(model, batch, visual, (1, 2, 2), same, torch.Generator().manual_seed(0))
    texts, images = (torch.tensor(column) for column in zip(*model.pairs, strict=True))
    assert torch.equal(texts, torch.arange(size))  # one unmasked row per caption, in order
    matched = labels == 1
    assert torch.equal(images[matched], image[matched])  # a matched row shows its own image
    assert (images[~matched] != image[~matched]).all()  # a false one: another image, not a twin caption's
    assert matched.sum() == size // 2  # SCL: pos_len = B // 2, the rest negatives
    assert len(set(images[~matched].tolist())) > 20  # drawn uniformly, not one hard image
    again = false_image_pairs(_RecordingModel(), batch, visual, (1, 2, 2), same, torch.Generator().manual_seed(1))[1]
    assert not torch.equal(again, labels)  # which rows are false follows the generator
    # one image in the batch: no false image to show, every pair stays matched
    one = torch.ones(4, 4, dtype=torch.bool)
    small, _ = _itm_batch(4)
    _, labels = false_image_pairs(
        _RecordingModel(), small, visual[:4], (1, 2, 2), one, torch.Generator().manual_seed(0)
    )
    assert labels.tolist() == [1, 1, 1, 1]


def _counting_fuse(model, monkeypatch) -> list[torch.Tensor]:
    """Records the input ids of every fusion forward."""
    calls: list[torch.Tensor] = []
    fuse = model.fuse

    def counted(input_ids, *args, **kwargs):
        calls.append(input_ids)
        return fuse(input_ids, *args, **kwargs)

    monkeypatch.setattr(model, "fuse", counted)
    return calls


def test_soho_itm_reads_mlm_mvm_and_itm_off_one_forward_and_albef_and_scl_add_their_own(monkeypatch):
    from soho.config import ObjectiveParams
    from soho.models.fusion import load_tokenizer
    from soho.models.soho import SohoModel
    from soho.objectives.pretraining import pretraining_step

    from ..conftest import tiny_model

    torch.manual_seed(0)
    model = SohoModel(tiny_model(embed_dim=32))
    tokenizer = load_tokenizer("minilm")
    texts = ["a red circle", "two blue squares", "a green triangle", "a white diamond"] * 2
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    batch["pixels"] = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    batch["image_key"] = torch.arange(8)
    special = torch.tensor(tokenizer.all_special_ids)
    calls = _counting_fuse(model, monkeypatch)
    for mode, rows in (("soho", [8]), ("albef", [8, 24]), ("scl", [8, 8])):
        calls.clear()
        weights = ObjectiveParams(mlm=1.0, mvm=1.0, itm=2.0, itm_negatives=mode)
        out = pretraining_step(
            model, batch, weights, special, tokenizer.mask_token_id, torch.Generator().manual_seed(0)
        )
        # soho: B rows once; albef: then B positives + 2B negatives; scl: then B pairs, half of them false
        assert [len(ids) for ids in calls] == rows, mode
        if mode == "soho":  # the one forward reads the swapped captions (masking keeps most tokens of each)
            swapped = (calls[0] != batch["input_ids"]).sum(1) > 2
            assert swapped.any() and not swapped.all()
        if mode == "scl":  # its own forward reads the matched captions unmasked, as SCL's compute_itm
            assert torch.equal(calls[1], batch["input_ids"])
        assert {"mlm_acc", "mvm_acc", "itm_acc"} <= set(out)
        total = sum(getattr(weights, k) * out[f"{k}_loss"] for k in ("mlm", "mvm", "itm"))
        assert torch.isclose(out["loss"], total, rtol=1e-4)
        model.zero_grad()
        out["loss"].backward()
        assert model.itm_head.weight.grad.abs().sum() > 0  # ITM trains in either mode
