"""Image-Text Matching with negatives sampled by similarity within the batch.

Why: random negatives are too easy once the model knows the rough topic; sampling a
negative text in proportion to its similarity to the image (ALBEF-style hard
negatives) keeps the task informative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_negatives(
    similarity: torch.Tensor, same: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """For each row (image), the column of a negative text, drawn from softmax(similarity).

    ``same`` (B,B) marks pairs that must not be drawn (the diagonal and other captions of the same image).
    """
    batch = similarity.shape[0]
    forbidden = torch.eye(batch, dtype=torch.bool, device=similarity.device)
    if same is not None:
        forbidden |= same
    weights = similarity.float().masked_fill(forbidden, float("-inf")).softmax(dim=1)
    weights = torch.nan_to_num(weights, nan=0.0)
    empty = weights.sum(1) == 0  # a row with no allowed column: fall back to any other row
    weights[empty] = (~torch.eye(batch, dtype=torch.bool, device=similarity.device))[empty].float()
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def itm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.cross_entropy(logits.float(), labels), (logits.argmax(-1) == labels).float().mean()
