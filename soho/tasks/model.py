"""SOHO plus a task head: one ``forward`` for training (loss) and one ``predict`` for evaluation.

Variants for the baselines share this code: ``text_only`` never encodes the image
(the fusion sees the text alone), ``scratch`` simply skips loading pre-trained weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soho.models.heads import task_head
from soho.models.soho import SohoModel
from soho.objectives import itm
from soho.objectives.pretraining import itm_pairs


class TaskModel(nn.Module):
    def __init__(self, model: SohoModel, task: str, text_only: bool = False, answers: list[str] | None = None):
        super().__init__()
        self.model, self.task, self.text_only = model, task, text_only
        self.answers = list(answers or [])
        self.head = task_head(task, model.hidden, len(self.answers))

    def _pooled(self, pixels: torch.Tensor, input_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        if self.text_only:
            hidden = self.model.fuse(input_ids, attention, None, None)
            return self.model.fusion.pool(hidden, attention)
        visual, _, layout = self.model.encode_image(pixels)
        return self.model.pool(self.model.fuse(input_ids, attention, visual, layout), attention)

    def logits(self, batch: dict) -> torch.Tensor:
        """Task logits: VQA (B, answers), NLVR2 (B, 2), SNLI-VE (B, 3), retrieval ITM (B, 2)."""
        ids, attention, pixels = batch["input_ids"], batch["attention_mask"], batch["pixels"]
        if self.task == "nlvr2":
            left = self._pooled(pixels[:, 0], ids, attention)
            right = self._pooled(pixels[:, 1], ids, attention)
            return self.head(torch.cat([left, right], dim=-1))
        pooled = self._pooled(pixels, ids, attention)
        return self.model.itm_head(pooled) if self.head is None else self.head(pooled)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.task.startswith("retrieval"):
            if self.text_only:  # no image: the ITM head sees the text alone
                logits = self.model.itm_head(self._pooled(None, batch["input_ids"], batch["attention_mask"]))
                logits = torch.cat([logits, logits])
                labels = torch.cat([torch.ones(len(logits) // 2), torch.zeros(len(logits) // 2)]).long()
            else:
                visual, _, layout = self.model.encode_image(batch["pixels"])
                same = batch["image_key"][:, None] == batch["image_key"][None, :]
                logits, labels = itm_pairs(self.model, batch, visual, layout, None, same)
            loss, acc = itm.itm_loss(logits, labels)
            return {"loss": loss, "acc": acc}
        logits = self.logits(batch)
        if self.task == "vqa":
            target = batch["target"]
            # BCE on soft scores, scaled by the answer count (UNITER / SOHO)
            loss = F.binary_cross_entropy_with_logits(logits, target, reduction="mean") * target.shape[1]
            acc = target.gather(1, logits.argmax(1, keepdim=True)).mean()
            return {"loss": loss, "score": acc}
        loss = F.cross_entropy(logits, batch["label"])
        return {"loss": loss, "acc": (logits.argmax(-1) == batch["label"]).float().mean()}

    @torch.no_grad()
    def match_matrix(self, pixels: torch.Tensor, ids: torch.Tensor, masks: torch.Tensor, chunk: int) -> torch.Tensor:
        """(texts, images) ITM match probabilities; each image goes through the CNN once.

        Why: scoring every pair through ``predict`` re-encodes the image per caption, which
        made the CNN, not the fusion, the cost of retrieval evaluation.
        """
        scores = torch.empty(len(ids), len(pixels))
        if self.text_only:  # the score cannot depend on the image
            for start in range(0, len(ids), chunk):
                pooled = self._pooled(None, ids[start : start + chunk], masks[start : start + chunk])
                scores[start : start + chunk] = self.model.itm_head(pooled).softmax(-1)[:, 1:2]
            return scores
        visual, _, layout = self.model.encode_image(pixels)
        for i in range(len(pixels)):
            for start in range(0, len(ids), chunk):
                text_ids, text_mask = ids[start : start + chunk], masks[start : start + chunk]
                tokens = visual[i : i + 1].expand(len(text_ids), -1, -1)
                pooled = self.model.pool(self.model.fuse(text_ids, text_mask, tokens, layout), text_mask)
                scores[start : start + chunk, i] = self.model.itm_head(pooled).softmax(-1)[:, 1]
        return scores

    @torch.no_grad()
    def predict(self, batch: dict) -> list:
        """Answers (VQA strings), class ids (NLVR2 / SNLI-VE) or match probabilities (retrieval)."""
        logits = self.logits(batch)
        if self.task == "vqa":
            return [self.answers[i] for i in logits.argmax(-1).tolist()]
        if self.task.startswith("retrieval"):
            return logits.softmax(-1)[:, 1].tolist()
        return logits.argmax(-1).tolist()
