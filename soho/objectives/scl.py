"""Semantic Completion Learning (SCL, arXiv 2211.13437), as ``compute_scl`` of IIGROUP/SCL's first commit.

Two fused passes per pair: masked vision with the full text, and masked text with the full
vision. The global feature of the masked side after fusion must recover the global feature
of the same side in the *other* pass, where that side was complete (detached): the model
learns to fill in the missing semantics from the other modality, not pixels or tokens
(MVM / MLM already do that). Recovery is contrastive over the batch (gathered across
ranks): the official ``NormSoftmaxLoss`` at temperature 0.03, both directions summed, and
the vision and text losses summed.

Masking, as the official code: 80% of the visual tokens are dropped from the sequence
after their position embeddings (MAE's random masking; at least one stays here, since a
single-stream model has no visual [CLS] to fall back on), and about 40% of the text
positions between [CLS] and [SEP] (``int((n - 2) * 0.4) + 1`` draws with replacement)
all become the mask token.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from soho.train.distributed import gather_batch

TEMPERATURE = 0.03  # fixed, the official ``scl_temp``


def scl_loss(
    completed: torch.Tensor,
    target: torch.Tensor,
    temperature: float = TEMPERATURE,
    gather: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official NormSoftmaxLoss of completed (B,d) against targets (B,d); (loss, accuracy).

    Both are L2-normalised here; the targets are detached, so gradients flow into
    ``completed`` only. ``gather``: negatives from every rank (a collective, training only).
    """
    completed = F.normalize(completed.float(), dim=-1, eps=1e-8)
    target = F.normalize(target.detach().float(), dim=-1, eps=1e-8)
    if gather:
        completed, target = gather_batch(completed), gather_batch(target)
    logits = completed @ target.t() / temperature
    labels = torch.arange(len(logits), device=logits.device)
    loss = F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)
    accuracy = (logits.argmax(1) == labels).float().mean()
    return loss, accuracy


def mask_text(
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    ratio: float,
    mask_id: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Input ids with ``int((n - 2) * ratio) + 1`` positions in [1, n - 2] set to ``mask_id``.

    ``n`` counts a row's real tokens ([CLS] ... [SEP]); positions are drawn uniformly with
    replacement, so fewer may be distinct; rows of two tokens or fewer stay as they are.
    """
    lengths = attention.sum(1)
    inner = (lengths - 2).clamp(min=0)
    counts = torch.where(lengths > 2, (inner.float() * ratio).long() + 1, torch.zeros_like(lengths))
    draws = int(counts.max()) if len(counts) else 0
    masked = input_ids.clone()
    if draws == 0:
        return masked
    uniform = torch.rand((len(input_ids), draws), generator=generator, device=input_ids.device)
    positions = 1 + (uniform * inner[:, None]).long().clamp(max=(inner[:, None] - 1).clamp(min=0))
    used = torch.arange(draws, device=input_ids.device)[None] < counts[:, None]
    rows = torch.arange(len(input_ids), device=input_ids.device)[:, None].expand_as(positions)
    masked[rows[used], positions[used]] = mask_id
    return masked


def kept_visual_tokens(
    batch: int, tokens: int, ratio: float, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, K) indices of the visual tokens kept: a random ``int(N * (1 - ratio))`` per row, at least one.

    For a clip, N = frames x cells: the draw spans every frame, as the official video model.
    """
    keep = max(1, int(tokens * (1 - ratio)))
    noise = torch.rand((batch, tokens), generator=generator, device=device)
    return noise.argsort(dim=1)[:, :keep]
