"""The SOHO model: vision encoder -> Visual Dictionary -> visual embeddings, fused with text by BERT.

Heads for pre-training live here (MLM tied to the word embeddings, MVM over the VD
entries, ITM on the pooled sequence); downstream heads are in ``heads.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from soho.config import ModelParams
from soho.models.fusion import CrossModalEncoder, load_tokenizer
from soho.models.vision import VisionEncoder, VisualEmbeddings, grid_mask
from soho.models.visual_dictionary import VisualDictionary


class SohoModel(nn.Module):
    """Built from ``params.yaml: model`` (:class:`soho.config.ModelParams`, where the defaults live)."""

    def __init__(self, spec: ModelParams):
        super().__init__()
        self.spec = spec
        text, vision, vd = spec.text, spec.vision, spec.vd
        self.fusion = CrossModalEncoder(text.init, text.num_layers, pooling=text.pooling)
        self.cls_token_id = load_tokenizer(text.init).cls_token_id
        hidden = self.fusion.hidden
        self.vision = VisionEncoder(
            hidden, vision.arch, list(vision.layers), vision.weights, vision.max_grid, vision.frozen_stages
        )
        self.vd = VisualDictionary(vd.size, hidden, vd.momentum, vd.dead_after) if vd.size else None
        self.visual_embeddings = VisualEmbeddings(hidden, vision.max_grid, vision.max_frames, position=vision.position)
        self.mlm_head = self.fusion.mlm_head()  # from the text checkpoint where it has one
        if text.freeze_word_embeddings:  # the tied decoder weight too; its bias still trains
            self.fusion.bert.embeddings.word_embeddings.weight.requires_grad_(False)
        # SOHO's pre-training neck (SimpleVDforPre): token = feature + Linear(VD entry); masked tokens
        # become a learned mask embedding
        self.vd_proj = nn.Linear(hidden, hidden) if vd.size else None
        self.mask_embedding = nn.Parameter(torch.randn(hidden) * 0.02)
        self.quantise = True  # False: the VD is bypassed (SOHO fine-tunes without it, SimpleVDforVQA)
        self.itm_head = nn.Linear(hidden, 2)
        self.image_proj = nn.Linear(hidden, spec.embed_dim)
        self.text_proj = nn.Linear(hidden, spec.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())  # ITC temperature 0.07 (ALBEF, SCL)

    @property
    def hidden(self) -> int:
        return self.fusion.hidden

    def encode_image(
        self, pixels: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int, int]]:
        """Pixels -> (visual tokens (B,N,d), VD indices (B,N) or None, layout).

        With the VD (pre-training): the raw grid feature plus a projection of its nearest VD
        entry (straight-through), as SOHO's pre-training neck. Without it (no VD, or
        ``quantise`` off for fine-tuning): the raw grid feature. ``pixel_mask`` (padded
        images): padded cells do not move the VD entries.
        """
        features, layout = self.vision(pixels)  # (B, N, d)
        if self.vd is None or not self.quantise:
            return features, None, layout
        valid = grid_mask(pixel_mask, layout)
        quantised, indices = self.vd(features, valid)  # (B, N, d) entry values, gradient to features; (B, N)
        return features + self.vd_proj(quantised), indices, layout

    def mvm_logits(self, hidden_visual: torch.Tensor) -> torch.Tensor:
        """MVM scores (B, N, k): cosine of each fused visual token with each current VD entry.

        As the official SOHO head: no classifier of its own, so the targets cannot go stale
        when entries move by EMA or are re-seeded.
        """
        entries = nn.functional.normalize(self.vd.embedding, dim=-1)  # (k, d)
        return nn.functional.normalize(hidden_visual, dim=-1) @ entries.t().to(hidden_visual.dtype)

    def fuse(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        visual: torch.Tensor | None,
        layout: tuple[int, int, int] | None,
        visual_masked: torch.Tensor | None = None,
        visual_valid: torch.Tensor | None = None,
        visual_kept: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states over [text; visual].

        ``visual_masked`` (B,N): those tokens become the learned mask embedding (SOHO's MVM).
        ``visual_valid`` (B,N): the real grid cells of padded images; no token attends to the others.
        ``visual_kept`` (B,K) indices: only those tokens enter, with the position embeddings
        of their cells (SCL drops the others from the sequence, as MAE-style masking).
        """
        text = self.fusion.embed_text(input_ids)
        if visual is None:
            return self.fusion(text, attention_mask, None)
        if visual_masked is not None:
            visual = torch.where(visual_masked[..., None], self.mask_embedding.to(visual.dtype), visual)
        embedded = self.visual_embeddings(visual, layout, visual_valid)
        if visual_kept is not None:
            embedded = embedded.gather(1, visual_kept[..., None].expand(-1, -1, embedded.shape[-1]))
            visual_valid = None if visual_valid is None else visual_valid.gather(1, visual_kept)
        return self.fusion(text, attention_mask, embedded, visual_valid)

    def image_embedding(
        self, visual: torch.Tensor, layout: tuple[int, int, int], visual_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Global image embedding: the pooled shared encoder over [CLS] + visual tokens alone, projected."""
        cls = torch.full((len(visual), 1), self.cls_token_id, dtype=torch.long, device=visual.device)
        hidden = self.fuse(cls, torch.ones_like(cls), visual, layout, visual_valid=visual_valid)
        mask = None if visual_valid is None else torch.cat([torch.ones_like(cls, dtype=torch.bool), visual_valid], 1)
        return nn.functional.normalize(self.image_proj(self.fusion.pool(hidden, mask)), dim=-1)

    def text_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Global text embedding: the pooled shared encoder over the text alone, projected."""
        hidden = self.fuse(input_ids, attention_mask, None, None)
        return nn.functional.normalize(self.text_proj(self.fusion.pool(hidden, attention_mask)), dim=-1)

    def completed_embeddings(self, hidden: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global (image, text) features of a fused [text; visual] sequence, as SCL compares them.

        The official SCL takes each stream's fused [CLS] state, with no pooler or projection.
        Text: the [CLS] state (``pooling: cls``) or the mean of the text states (``mean``,
        whose [CLS] is uninformative). Image: the mean of the visual states, since a
        single-stream encoder has no visual [CLS]; BertPooler there would read the top-left
        cell. Not normalised: ``scl.scl_loss`` does that.
        """
        length = text_mask.shape[1]
        return hidden[:, length:].mean(1), self.fusion.summarise(hidden[:, :length], text_mask)

    def pool(
        self, hidden: torch.Tensor, text_mask: torch.Tensor, visual_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled [text; visual] hidden states (every real visual token counts; padded cells do not)."""
        visual = hidden.shape[1] - text_mask.shape[1]
        cells = text_mask.new_ones(len(text_mask), visual) if visual_valid is None else visual_valid.to(text_mask.dtype)
        return self.fusion.pool(hidden, torch.cat([text_mask, cells], dim=1))

    def itm_logits(
        self, hidden: torch.Tensor, text_mask: torch.Tensor, visual_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.itm_head(self.pool(hidden, text_mask, visual_valid))

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of the CNN (its own learning rate) and of everything else."""
        cnn = [p for p in self.vision.parameters() if p.requires_grad]
        cnn_ids = {id(p) for p in cnn}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in cnn_ids]
        return {"cnn": cnn, "transformer": rest}
