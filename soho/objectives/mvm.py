"""Masked Visual Modeling (SOHO): mask every visual token that shares a chosen VD index,
then predict that index from the fused context.

Why: neighbouring grid cells are strongly correlated; masking one cell lets the model
copy its neighbour. Masking all tokens mapped to one visual word forces it to infer
the word from language and the rest of the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def choose_masked_tokens(
    indices: torch.Tensor,
    probability: float,
    generator: torch.Generator | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """For each image (with ``probability``), pick one VD index present in it and mask all its tokens.

    indices: (B, N) VD indices; valid: (B, N) real grid cells (padded ones are neither chosen
    nor masked), None: all. Returns a (B, N) bool mask.
    """
    batch, _ = indices.shape
    picked = torch.rand(batch, generator=generator, device=indices.device) < probability
    draws = torch.rand(indices.shape, generator=generator, device=indices.device)
    if valid is None:
        position = draws.argmax(dim=1)
        chosen_index = indices.gather(1, position[:, None])  # a present index, uniformly over tokens
        return (indices == chosen_index) & picked[:, None]
    position = draws.masked_fill(~valid, -1.0).argmax(dim=1)  # uniformly over the real tokens
    chosen_index = indices.gather(1, position[:, None])
    return (indices == chosen_index) & picked[:, None] & valid


def mvm_loss(logits: torch.Tensor, indices: torch.Tensor, masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the masked tokens' VD index and the accuracy there."""
    if not masked.any():
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    target = indices[masked]
    chosen = logits[masked].float()
    return F.cross_entropy(chosen, target), (chosen.argmax(-1) == target).float().mean()
