"""Image-Text Matching with hard negatives sampled by similarity within the batch, both ways.

Why: random negatives are too easy once the model knows the rough topic. As ALBEF
(``model_pretrain.py``), every image gets a negative text and every text a negative image,
each drawn in proportion to softmax(ITC similarity) over the other pairs of the batch, so
the matched pairs are one third of the ITM batch (B positives, 2B negatives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_negatives(
    similarity: torch.Tensor, same: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns): for each row, a column drawn from softmax(similarity) over its allowed columns.

    ``same`` (B,B) marks pairs that must not be drawn besides the diagonal (other captions
    of the same image). A row with no allowed column (a one-sample batch, or a batch of
    one image's captions) gets no negative rather than a false one, so ``rows`` may be
    shorter than B, or empty. For negative images per text, pass ``similarity.t()``.
    """
    batch = similarity.shape[0]
    forbidden = torch.eye(batch, dtype=torch.bool, device=similarity.device)
    if same is not None:
        forbidden |= same
    rows = (~forbidden).any(1).nonzero().squeeze(1)
    if len(rows) == 0:
        return rows, rows.clone()
    weights = similarity[rows].float().masked_fill(forbidden[rows], float("-inf")).softmax(dim=1)
    return rows, torch.multinomial(weights, 1, generator=generator).squeeze(1)


def itm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over all pairs (as ALBEF) and the balanced accuracy.

    Why balanced: with one positive for two negatives, answering "no match" everywhere
    would score 0.67; the mean of the per-class accuracies keeps chance at 0.5, so a
    threshold on ``itm_acc`` means what it meant with a 1:1 batch.
    """
    correct = (logits.argmax(-1) == labels).float()
    accuracy = torch.stack([correct[labels == label].mean() for label in labels.unique()]).mean()
    return F.cross_entropy(logits.float(), labels), accuracy
