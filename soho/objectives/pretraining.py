"""The SOHO pre-training step: MLM + MVM on one masked forward; ITM on that forward or on one of its own.

ITM's pairs follow ``pretrain.objectives.itm_negatives``: ``soho`` as the official SOHO code
(half the captions swapped for another image's, MLM, MVM and ITM read off the one masked
forward: one fusion pass of B rows), ``albef`` as ALBEF (a second, unmasked forward over B
matched pairs and 2B negatives both ways: three times the rows), ``scl`` as the official SCL
code (a second, unmasked forward over B captions, half of them with another image: B rows,
negatives uniform even when ITC trains). Each objective has a weight
(``params.yaml: pretrain.objectives``); weight 0 removes it (and its forward work) from the
step, so ablations are parameter sweeps.
"""

from __future__ import annotations

import torch
from torch import nn

from soho.config import ObjectiveParams
from soho.models.soho import SohoModel
from soho.models.vision import grid_mask
from soho.models.visual_dictionary import VisualDictionary
from soho.objectives import itc, itm, mlm, mvm, scl
from soho.train import distributed


def pretraining_step(
    model: SohoModel,
    batch: dict[str, torch.Tensor],
    weights: ObjectiveParams,
    special_ids: torch.Tensor | None,
    mask_id: int,
    generator: torch.Generator | None = None,
    gather: bool = False,
) -> dict[str, torch.Tensor]:
    """Returns ``loss`` (weighted sum) plus each component's loss and accuracy (detached).

    ``gather``: SCL's negatives come from every rank (a collective: the training forward only).
    """
    input_ids, attention = batch["input_ids"], batch["attention_mask"]
    visual, indices, layout = model.encode_image(batch["pixels"], batch.get("pixel_mask"))
    valid = grid_mask(batch.get("pixel_mask"), layout)  # None: square images, every cell is real
    out: dict[str, torch.Tensor] = {}
    total = visual.sum() * 0.0
    text_len = input_ids.shape[1]
    use_mvm = weights.mvm > 0 and indices is not None
    same = batch["image_key"][:, None] == batch["image_key"][None, :] if "image_key" in batch else None
    shared_itm = weights.itm > 0 and weights.itm_negatives == "soho"
    # the masked forward's texts: SOHO's ITM swaps half of them (MLM then reads the swapped ones, as
    # the official code); ITC and SCL below keep the matched pairs
    text_ids, text_mask, itm_labels = (
        swapped_captions(input_ids, attention, same, generator) if shared_itm else (input_ids, attention, None)
    )
    if weights.mlm > 0 or use_mvm or shared_itm:
        special = mlm.special_positions(text_ids, text_mask, special_ids)
        masked_ids, labels = (
            mlm.mask_tokens(
                text_ids, special, mask_id, model.fusion.config.vocab_size, weights.mlm_probability, generator
            )
            if weights.mlm > 0
            else (text_ids, None)
        )
        visual_masked = (
            mvm.choose_masked_tokens(indices, weights.mvm_probability, generator, valid) if use_mvm else None
        )
        hidden = model.fuse(masked_ids, text_mask, visual, layout, visual_masked, valid)
        if labels is not None:
            loss, acc = mlm.mlm_loss(hidden[:, :text_len], labels, model.mlm_head)
            total = total + weights.mlm * loss
            out |= {"mlm_loss": loss.detach(), "mlm_acc": acc}
        if visual_masked is not None:
            loss, acc = mvm.mvm_loss(model.mvm_logits(hidden[:, text_len:]), indices, visual_masked)
            total = total + weights.mvm * loss
            out |= {"mvm_loss": loss.detach(), "mvm_acc": acc}
        if itm_labels is not None:
            itm_logits = model.itm_logits(hidden, text_mask, valid)
    similarity = None
    if weights.itc > 0:
        image_embed = model.image_embedding(visual, layout, valid)
        text_embed = model.text_embedding(input_ids, attention)
        if gather and distributed.world_size() > 1:
            loss, acc, similarity = gathered_itc(model, image_embed, text_embed, batch["image_key"])
        else:
            loss, acc, similarity = itc.itc_loss(image_embed, text_embed, model.logit_scale, same)
        total = total + weights.itc * loss
        out |= {"itc_loss": loss.detach(), "itc_acc": acc}
    if weights.scl > 0:
        loss, parts = semantic_completion(model, batch, visual, layout, weights, mask_id, generator, gather, valid)
        total = total + weights.scl * loss
        out |= {"scl_loss": loss.detach()} | parts
    if weights.itm > 0:
        if weights.itm_negatives == "scl":  # SCL's pairs: a second forward, half the images false
            itm_logits, itm_labels = false_image_pairs(model, batch, visual, layout, same, generator, valid)
        elif not shared_itm:  # ALBEF's pairs: a second forward, after ITC gave the hard negatives' weights
            itm_logits, itm_labels = itm_pairs(model, batch, visual, layout, similarity, same, generator, valid)
        loss, acc = itm.itm_loss(itm_logits, itm_labels)
        total = total + weights.itm * loss
        out |= {"itm_loss": loss.detach(), "itm_acc": acc}
    if indices is not None:
        out["vd_indices"] = indices.detach()
    out["loss"] = total
    return out


def gathered_itc(
    model: SohoModel, image: torch.Tensor, text: torch.Tensor, image_key: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ITC of every rank's embeddings against every rank's, as SCL's ``compute_con`` (``AllGather_multi``:
    the gradient of this rank's rows only); returns (loss, accuracy, this rank's (B,B) block of the logits).

    Why the local block: ITM draws its hard negatives inside this rank's batch, whose images and
    texts are the ones it has fused.
    """
    keys, sizes = distributed.all_gather_rows(image_key)  # (N,): captions of one image are positives
    image_all, text_all = distributed.gather_batch(image), distributed.gather_batch(text)  # (N, d) each
    loss, acc, logits = itc.itc_loss(image_all, text_all, model.logit_scale, keys[:, None] == keys[None, :])
    start = sum(sizes[: distributed.rank()])
    return loss, acc, logits[start : start + len(image), start : start + len(image)]


class Pretraining(nn.Module):
    """Wraps SOHO so that the whole pre-training step is one ``forward`` (as DDP requires)."""

    def __init__(self, model: SohoModel, weights: ObjectiveParams, tokenizer):
        super().__init__()
        self.model, self.weights = model, weights
        self.register_buffer("special_ids", torch.tensor(tokenizer.all_special_ids), persistent=False)
        self.mask_id = tokenizer.mask_token_id
        self.generator: torch.Generator | None = None

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        out = pretraining_step(
            self.model, batch, self.weights, self.special_ids, self.mask_id, self.generator, gather=self.training
        )
        if "vd_indices" in out and self.model.vd is not None:
            out |= VisualDictionary.usage(out.pop("vd_indices"), self.model.vd.size)  # on the model's device
        return out


def swapped_captions(
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    same: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SOHO's ITM pairs: (texts (B,L), their attention (B,L), labels (B,): 1 matched, 0 swapped).

    As the official data loader (``VisualLanguagePretrain.create_item``): each caption, with
    probability 1/2, is replaced by a caption of another image, drawn uniformly: here the row of
    another image in the batch (never another caption of the same image: ``same`` (B,B)). A row
    with no other image in the batch stays matched.
    """
    batch = len(input_ids)
    rows, columns = itm.sample_negatives(torch.zeros(batch, batch, device=input_ids.device), same, generator)
    coin = torch.rand(len(rows), generator=generator, device=input_ids.device) < 0.5  # (R,) swap this row
    source = torch.arange(batch, device=input_ids.device)
    source[rows[coin]] = columns[coin]
    labels = (source == torch.arange(batch, device=input_ids.device)).long()
    return input_ids[source], attention[source], labels


def itm_pairs(
    model: SohoModel,
    batch: dict[str, torch.Tensor],
    visual: torch.Tensor,
    layout: tuple[int, int, int],
    similarity: torch.Tensor | None = None,
    same: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ITM logits and labels: matched pairs, each image with a mismatched text, each text with a mismatched image.

    ``valid`` (B, N) marks real grid cells (padding masks, paper profile); it follows the images.

    As ALBEF: B positives, then up to 2B negatives (fewer where a row has no other image to
    draw, as in a one-sample batch). The negatives are drawn by ITC similarity when ITC is
    trained (hard negatives), else uniformly: before alignment there is no similarity worth
    sampling by. ``similarity`` is (images, texts).
    """
    input_ids, attention = batch["input_ids"], batch["attention_mask"]
    if similarity is None:
        similarity = torch.zeros(len(input_ids), len(input_ids), device=input_ids.device)
    images, negative_texts = itm.sample_negatives(similarity, same, generator)
    texts, negative_images = itm.sample_negatives(similarity.t(), None if same is None else same.t(), generator)
    ids = torch.cat([input_ids, input_ids[negative_texts], input_ids[texts]])
    mask = torch.cat([attention, attention[negative_texts], attention[texts]])
    rows = None if valid is None else torch.cat([valid, valid[images], valid[negative_images]])
    hidden = model.fuse(
        ids, mask, torch.cat([visual, visual[images], visual[negative_images]]), layout, visual_valid=rows
    )
    labels = torch.cat([torch.ones_like(input_ids[:, 0]), torch.zeros_like(negative_texts), torch.zeros_like(texts)])
    return model.itm_logits(hidden, mask, rows), labels.long()


def false_image_pairs(
    model: SohoModel,
    batch: dict[str, torch.Tensor],
    visual: torch.Tensor,
    layout: tuple[int, int, int],
    same: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SCL's ITM pairs: (logits (B,2), labels (B,): 1 matched, 0 shown a false image).

    As IIGROUP/SCL ``compute_itm``: labels are B//2 ones and the rest zeros in a random order;
    a row labelled 0 gets a false image (``false_image_0``, drawn uniformly from the data set:
    here another image of the batch, never one of the same ``image_key``), and every row goes
    through one unmasked forward. Why not ALBEF's ITC-drawn negatives (``itm_pairs``): SCL draws
    its false images at random, and one forward of B rows costs a third of ALBEF's 3B
    (``docs/deviations.md``, ITM pairs). A row with no other image in the batch stays matched.
    """
    input_ids, attention = batch["input_ids"], batch["attention_mask"]
    size, device = len(input_ids), input_ids.device
    order = torch.randperm(size, generator=generator, device=device)
    false = torch.zeros(size, dtype=torch.bool, device=device)
    false[order[size // 2 :]] = True  # (B,) as SCL: pos_len = B // 2, the rest negatives, shuffled
    texts, images = itm.sample_negatives(
        torch.zeros(size, size, device=device), None if same is None else same.t(), generator
    )  # (R,) texts with another image to show, (R,) that image
    shown = torch.arange(size, device=device)
    drawn = false[texts]
    shown[texts[drawn]] = images[drawn]
    labels = (shown == torch.arange(size, device=device)).long()
    rows = None if valid is None else valid[shown]
    hidden = model.fuse(input_ids, attention, visual[shown], layout, visual_valid=rows)
    return model.itm_logits(hidden, attention, rows), labels


def semantic_completion(
    model: SohoModel,
    batch: dict[str, torch.Tensor],
    visual: torch.Tensor,
    layout: tuple[int, int, int],
    weights: ObjectiveParams,
    mask_id: int,
    generator: torch.Generator | None = None,
    gather: bool = False,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SCL as the official ``compute_scl``: (L_vision + L_text, their parts, detached).

    Pass 1 drops most visual tokens and keeps the text; pass 2 masks the text and keeps
    every visual token. Each pass's masked side is scored against the other pass's complete
    side. Its masks are drawn apart from MLM/MVM's, so switching SCL leaves those inputs as
    they were.
    """
    input_ids, attention = batch["input_ids"], batch["attention_mask"]
    kept = scl.kept_visual_tokens(len(visual), visual.shape[1], weights.scl_vision_mask_ratio, visual.device, generator)
    masked_ids = scl.mask_text(input_ids, attention, weights.scl_text_mask_ratio, mask_id, generator)
    image_masked, text_full = model.completed_embeddings(
        model.fuse(input_ids, attention, visual, layout, visual_valid=valid, visual_kept=kept), attention
    )
    image_full, text_masked = model.completed_embeddings(
        model.fuse(masked_ids, attention, visual, layout, visual_valid=valid), attention
    )
    loss_vision, acc_vision = scl.scl_loss(image_masked, image_full, gather=gather)
    loss_text, acc_text = scl.scl_loss(text_masked, text_full, gather=gather)
    parts = {
        "scl_vision_loss": loss_vision.detach(),
        "scl_text_loss": loss_text.detach(),
        "scl_vision_acc": acc_vision,
        "scl_text_acc": acc_text,
    }
    return loss_vision + loss_text, parts
