"""SOHO plus a task head: one ``forward`` for training (loss) and one ``predict`` for evaluation.

The task (``soho.tasks.base.Task``) decides the head, the loss and the prediction; this
module only knows how a pair is encoded. Variants for the baselines share it: ``text_only``
never encodes the image (the fusion sees the text alone), ``scratch`` simply skips loading
pre-trained weights.
"""

from __future__ import annotations

import torch
from torch import nn

from soho.models.soho import SohoModel
from soho.models.vision import grid_mask
from soho.tasks.base import Task


class TaskModel(nn.Module):
    def __init__(
        self,
        model: SohoModel,
        task: Task,
        text_only: bool = False,
        answers: list[str] | None = None,
        itc_weight: float = 1.0,
        vd: str = "bypass",
        rerank_k: int = 0,
    ):
        super().__init__()
        self.model, self.task, self.text_only, self.itc_weight, self.vd = model, task, text_only, itc_weight, vd
        self.rerank_k = rerank_k  # retrieval: ITM re-scores the ITC top-k per query (0: every pair)
        # bypass: SOHO fine-tunes without the VD (SimpleVDforVQA), raw grid features; frozen: the
        # pre-trained tokens (feature + projected entry), the entries fixed
        model.quantise = vd == "frozen"
        if model.vd is not None:
            model.vd.frozen = vd == "frozen"
        self.answers = list(answers or [])
        self.head = task.head(model.hidden, self.answers)

    def pooled(
        self,
        pixels: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, d) pooled [text; visual] output; the text alone for ``text_only`` (or no pixels).

        ``pixel_mask``: the real pixels of padded (keep-ratio) images; padded grid cells are
        neither attended to nor pooled.
        """
        if self.text_only or pixels is None:
            hidden = self.model.fuse(input_ids, attention, None, None)
            return self.model.fusion.pool(hidden, attention)
        visual, _, layout = self.model.encode_image(pixels, pixel_mask)
        valid = grid_mask(pixel_mask, layout)
        return self.model.pool(
            self.model.fuse(input_ids, attention, visual, layout, visual_valid=valid), attention, valid
        )

    def logits(self, batch: dict) -> torch.Tensor:
        return self.task.logits(self, batch)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.task.loss(self, batch)

    @torch.no_grad()
    def predict(self, batch: dict) -> list:
        """Answers (VQA strings), class ids (NLVR2 / SNLI-VE) or match probabilities (retrieval)."""
        return self.task.predict(self, batch)
