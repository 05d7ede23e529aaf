"""Semantic Completion Learning (SCL, arXiv 2211.13437).

A masked image (masked text) is fused with the other, unmasked modality; the global
representation of the masked side after fusion must recover the global representation
of its own unmasked version. Recovery is contrastive: among the batch's unmasked
targets, the completed feature must pick its own (InfoNCE, both directions), so the
model learns to fill in the missing *semantics* from the other modality, not pixels or
tokens (MVM / MLM already do that).

Targets are the unimodal global embeddings of the complete inputs, the ones ITC aligns
(``SohoModel.image_embedding`` / ``text_embedding``), taken with a stop-gradient so the
completion chases the targets rather than dragging them towards the masked view.
Temperature 0.07, fixed, as ITC's initial value.
"""

from __future__ import annotations

import math

import torch

from soho.objectives.itc import itc_loss

TEMPERATURE = 0.07


def scl_loss(
    completed: torch.Tensor,
    target: torch.Tensor,
    same: torch.Tensor | None = None,
    temperature: float = TEMPERATURE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE between completed (B,d) and complete (B,d) L2-normalised features; (loss, accuracy).

    ``same`` (B,B) marks other rows that are also positives (the same image in another
    caption pair). The target side is detached here: gradients flow into ``completed`` only.
    """
    scale = torch.tensor(math.log(1 / temperature), device=completed.device)
    loss, accuracy, _ = itc_loss(completed, target.detach(), scale, same)
    return loss, accuracy
