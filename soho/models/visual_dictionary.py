"""The Visual Dictionary (VD): quantise visual features to their nearest of k embeddings.

Why (SOHO, Sec. 3.2): grouping similar grid features into one "visual word" gives
visual tokens a semantic vocabulary, which MVM predicts. The mapping (argmin) is not
differentiable: the output carries D[i] forward and passes the gradient straight to
the feature (stop-gradient on D[i] - f), so the CNN still trains. The entries get
no gradient; they move by momentum toward the mean of the features assigned to them.
Entries unused for ``dead_after`` updates are re-seeded from current features.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from soho.train.distributed import all_gather_rows


class VisualDictionary(nn.Module):
    def __init__(self, size: int, dim: int, momentum: float = 0.99, dead_after: int = 100):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"model.vd.momentum must be in [0, 1) (got {momentum})")
        self.size, self.dim, self.momentum, self.dead_after = size, dim, momentum, dead_after
        self.register_buffer("embedding", torch.randn(size, dim) * 0.02)
        self.register_buffer("idle_steps", torch.zeros(size, dtype=torch.long))
        self.register_buffer("initialised", torch.tensor(False))
        self.frozen = False  # fine-tuning with a fixed dictionary (finetune.vd: frozen): no seeding, no EMA

    @torch.no_grad()
    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """Index of the nearest entry (squared L2) for each feature; (..., d) -> (...)."""
        flat = features.reshape(-1, self.dim).float()
        distances = (
            flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embedding.t() + self.embedding.pow(2).sum(1)[None, :]
        )
        return distances.argmin(dim=1).reshape(features.shape[:-1])

    def forward(self, features: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (quantised features with a straight-through gradient, indices).

        ``valid`` (features' leading shape, bool): the features that may seed and move entries;
        padded grid cells of keep-ratio batches are not image content. None: all of them.
        """
        learn_from = features.detach() if valid is None else features.detach()[valid]
        learning = self.training and not self.frozen
        if learning and not bool(self.initialised):
            self._seed(learn_from.reshape(-1, self.dim), torch.ones(self.size, dtype=torch.bool))
            self.initialised.fill_(True)
        indices = self.assign(features)
        quantised = self.embedding[indices].to(features.dtype)
        if learning:
            self.update(learn_from, indices if valid is None else indices[valid])
        return features + (quantised - features).detach(), indices

    @torch.no_grad()
    def update(self, features: torch.Tensor, indices: torch.Tensor) -> None:
        """D_j <- m * D_j + (1 - m) * mean(features assigned to j), summed over all DDP ranks."""
        flat, idx = features.reshape(-1, self.dim).float(), indices.reshape(-1)
        sums = torch.zeros_like(self.embedding).index_add_(0, idx, flat)
        counts = torch.bincount(idx, minlength=self.size).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        used = counts > 0
        means = sums[used] / counts[used, None]
        self.embedding[used] = self.momentum * self.embedding[used] + (1 - self.momentum) * means
        self.idle_steps[used] = 0
        self.idle_steps[~used] += 1
        dead = self.idle_steps >= self.dead_after
        if dead.any():
            self._seed(flat, dead)

    @torch.no_grad()
    def _seed(self, flat: torch.Tensor, which: torch.Tensor) -> None:
        """Re-initialise the selected entries from random features (the same on every rank)."""
        if dist.is_available() and dist.is_initialized():
            flat, _ = all_gather_rows(flat)  # ranks hold different counts of features
        generator = torch.Generator(device="cpu").manual_seed(int(self.idle_steps.sum()) + flat.shape[0])
        picks = torch.randint(0, flat.shape[0], (int(which.sum()),), generator=generator).to(flat.device)
        noise = torch.randn(int(which.sum()), self.dim, generator=generator).to(flat.device)
        self.embedding[which] = flat[picks].float() + 1e-3 * noise
        self.idle_steps[which] = 0

    @staticmethod
    def usage(indices: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
        """Perplexity of the assignment distribution and the fraction of entries used (0-dim, on ``indices``' device)."""
        return VisualDictionary.usage_of_counts(torch.bincount(indices.reshape(-1), minlength=size).float())

    @staticmethod
    def usage_of_counts(counts: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`usage` from (K,) assignment counts (summed over batches or ranks before the ratios are taken)."""
        probs = counts / counts.sum().clamp(min=1)
        entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
        return {"vd_perplexity": entropy.exp(), "vd_used_fraction": (counts > 0).float().mean()}
