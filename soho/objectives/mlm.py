"""Masked Language Modeling with BERT's masking rules (15%: 80% [MASK], 10% random, 10% kept)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def special_positions(input_ids: torch.Tensor, attention: torch.Tensor, special_ids: torch.Tensor) -> torch.Tensor:
    """Positions never masked: special tokens ([CLS], [SEP], ...) and padding."""
    return torch.isin(input_ids, special_ids) | (attention == 0)


def mask_tokens(
    input_ids: torch.Tensor,
    special: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (masked input ids, labels with -100 where no prediction is asked).

    ``special`` marks positions never masked ([CLS], [SEP], padding).
    """
    rand = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    chosen = (rand < probability) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    masked = input_ids.clone()
    masked[chosen & (action < 0.8)] = mask_id
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    swap = chosen & (action >= 0.8) & (action < 0.9)
    masked[swap] = random_tokens[swap]
    return masked, labels


def mlm_loss(
    hidden: torch.Tensor, labels: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over masked positions and the accuracy there.

    The vocabulary projection runs on the masked positions only (~15% of tokens): it is
    the most expensive matrix product of the step.
    """
    active = labels != -100
    if not active.any():
        zero = hidden.sum() * 0.0
        return zero, zero.detach()
    logits = head(hidden[active]).float()
    loss = F.cross_entropy(logits, labels[active])
    return loss, (logits.argmax(-1) == labels[active]).float().mean()
