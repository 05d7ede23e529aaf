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
from soho.objectives.pretraining import ObjectiveWeights, pretraining_step


class TaskModel(nn.Module):
    def __init__(
        self,
        model: SohoModel,
        task: str,
        text_only: bool = False,
        answers: list[str] | None = None,
        itc_weight: float = 1.0,
    ):
        super().__init__()
        self.model, self.task, self.text_only, self.itc_weight = model, task, text_only, itc_weight
        model.quantise = False  # SOHO fine-tunes without the VD (SimpleVDforVQA): raw grid features
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
            else:  # ITM (+ ITC, whose similarities then pick hard negatives): the pre-training step itself
                weights = ObjectiveWeights(mlm=0.0, mvm=0.0, itm=1.0, itc=self.itc_weight)
                out = pretraining_step(self.model, batch, weights, special_ids=None, mask_id=-1)
                return {"loss": out["loss"], "acc": out["itm_acc"]} | (
                    {"itc_acc": out["itc_acc"]} if "itc_acc" in out else {}
                )
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
    def match_matrix(
        self, pixels: torch.Tensor, ids: torch.Tensor, masks: torch.Tensor, chunk: int, rerank_k: int = 0
    ) -> torch.Tensor:
        """(texts, images) retrieval scores; each image goes through the CNN once.

        ``rerank_k == 0``: the ITM match probability of every pair (SOHO's protocol).
        ``rerank_k > 0``: ITC similarity ranks every pair, then ITM re-scores the top-k
        images of each text and the top-k texts of each image (ALBEF's protocol); the
        re-scored pairs (in [0, 1]) rank above the rest (ITC cosine shifted to [-4, -2]).
        Why: ITM costs one fusion pass per pair, so all pairs grow as texts x images.
        """
        if self.text_only:  # the score cannot depend on the image
            scores = torch.empty(len(ids), len(pixels))
            for start in range(0, len(ids), chunk):
                pooled = self._pooled(None, ids[start : start + chunk], masks[start : start + chunk])
                scores[start : start + chunk] = self.model.itm_head(pooled).softmax(-1)[:, 1:2]
            return scores
        visual, _, layout = self.model.encode_image(pixels)
        if not rerank_k or rerank_k >= len(pixels):
            pairs = torch.cartesian_prod(torch.arange(len(ids)), torch.arange(len(pixels)))
            scores = torch.empty(len(ids), len(pixels))
        else:
            scores = self._itc_similarity(visual, layout, ids, masks, chunk) - 3.0
            candidates = torch.zeros_like(scores, dtype=torch.bool)
            candidates.scatter_(1, scores.topk(rerank_k, dim=1).indices, True)
            candidates.scatter_(0, scores.topk(min(rerank_k, len(ids)), dim=0).indices, True)
            pairs = candidates.nonzero()
        for start in range(0, len(pairs), chunk):
            text, image = pairs[start : start + chunk].unbind(1)
            pooled = self.model.pool(self.model.fuse(ids[text], masks[text], visual[image], layout), masks[text])
            scores[text, image] = self.model.itm_head(pooled).softmax(-1)[:, 1].float()
        return scores

    def _itc_similarity(self, visual, layout, ids: torch.Tensor, masks: torch.Tensor, chunk: int) -> torch.Tensor:
        images = torch.cat([self.model.image_embedding(v, layout) for v in visual.split(chunk)])
        texts = torch.cat(
            [self.model.text_embedding(i, m) for i, m in zip(ids.split(chunk), masks.split(chunk), strict=True)]
        )
        return texts.float() @ images.float().t()

    @torch.no_grad()
    def predict(self, batch: dict) -> list:
        """Answers (VQA strings), class ids (NLVR2 / SNLI-VE) or match probabilities (retrieval)."""
        logits = self.logits(batch)
        if self.task == "vqa":
            return [self.answers[i] for i in logits.argmax(-1).tolist()]
        if self.task.startswith("retrieval"):
            return logits.softmax(-1)[:, 1].tolist()
        return logits.argmax(-1).tolist()
