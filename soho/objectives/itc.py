"""Image-Text Contrastive alignment (ITC) of global image and text embeddings.

Why: SCL (arXiv 2211.13437) trains with ITC beside its completion loss, and an
aligned embedding space gives ITM informative hard negatives (ALBEF) and retrieval a
cheap first-stage ranking. Captions of the same image in one batch are all positives
(soft targets), so a 5-captions-per-image batch is not punished for being right.
"""

from __future__ import annotations

import torch


def itc_loss(
    image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, same: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over L2-normalised (B,d) embeddings.

    Returns (loss, image-to-text accuracy, similarity logits (B,B), detached).
    ``same`` (B,B) marks pairs that are also positives (other captions of the same image).
    """
    logits = logit_scale.exp().clamp(max=100.0) * image.float() @ text.float().t()
    positives = torch.eye(len(image), dtype=torch.bool, device=image.device)
    if same is not None:
        positives |= same
    targets = positives.float() / positives.float().sum(1, keepdim=True)
    loss_i2t = -(targets * logits.log_softmax(1)).sum(1).mean()
    loss_t2i = -(targets.t() * logits.t().log_softmax(1)).sum(1).mean()
    accuracy = positives.gather(1, logits.argmax(1, keepdim=True)).float().mean()
    return (loss_i2t + loss_t2i) / 2, accuracy, logits.detach()
