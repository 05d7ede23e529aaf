"""Downstream heads on the pooled cross-modal representation (as in SOHO / UNITER).

Why an MLP (dense -> GELU -> LayerNorm -> dense): it is the head SOHO and UNITER use
for VQA, NLVR2 and SNLI-VE; retrieval reuses the pre-trained ITM head.
"""

from __future__ import annotations

from torch import nn


def mlp_head(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, outputs))


def task_head(task: str, hidden: int, num_answers: int = 0) -> nn.Module | None:
    """The head of ``task``: None for retrieval (ITM head), else an MLP of the right output size."""
    if task.startswith("retrieval"):
        return None
    if task == "vqa":
        return mlp_head(hidden, 2 * hidden, num_answers)
    if task == "nlvr2":  # both images' pooled outputs, concatenated (pair fusion as in the paper)
        return mlp_head(2 * hidden, 2 * hidden, 2)
    if task == "snli_ve":
        return mlp_head(hidden, 2 * hidden, 3)
    raise ValueError(f"unknown task {task!r}")
