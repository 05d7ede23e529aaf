"""Downstream heads on the pooled cross-modal representation (as in SOHO / UNITER).

Why an MLP (dense -> GELU -> LayerNorm -> dense): it is the head SOHO and UNITER use
for VQA, NLVR2 and SNLI-VE; retrieval reuses the pre-trained ITM head. Each task
(``soho.tasks``) picks its sizes.
"""

from __future__ import annotations

from torch import nn


def mlp_head(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, outputs))
