"""Downstream tasks, looked up by name: image and video retrieval, VQA, NLVR2 and SNLI-VE.

Why a registry: the stages, the fine-tuning loop and the model ask the task what to do
(``get(name)``), so a new task is one module and one entry here (README, "Add a task").
Each task's fine-tuning parameters are ``finetune`` with ``finetune.tasks.<name>`` merged over it.
"""

from __future__ import annotations

from soho.config import ConfigError, FinetuneParams, Params
from soho.tasks.base import Task
from soho.tasks.nlvr2 import NLVR2
from soho.tasks.retrieval import Retrieval
from soho.tasks.snli_ve import SnliVE
from soho.tasks.vqa import VQA

REGISTRY: dict[str, Task] = {
    task.name: task
    for task in (
        Retrieval("retrieval_coco", "coco"),
        Retrieval("retrieval_flickr30k", "flickr30k"),
        VQA(),
        NLVR2(),
        SnliVE(),
        Retrieval("retrieval_msrvtt", "msrvtt", video=True),  # video: the same encoder over sampled frames
    )
}
TASKS = tuple(REGISTRY)


def get(name: str) -> Task:
    if name not in REGISTRY:
        raise ConfigError(f"unknown task {name!r} (known: {sorted(REGISTRY)})")
    return REGISTRY[name]


def finetune_params(params: Params, name: str, variant: str | None = None) -> FinetuneParams:
    """``finetune`` for task ``name``: the shared defaults with ``finetune.tasks.<name>`` merged over them,
    then (for a ``variant``) ``finetune.by_variant.<variant>``."""
    unknown = sorted(set(params.finetune.tasks) - set(REGISTRY))
    if unknown:
        raise ConfigError(f"finetune.tasks: unknown task(s) {unknown} (known: {sorted(REGISTRY)})")
    get(name)
    settings = params.finetune.for_task(name)
    return settings if variant is None else settings.for_variant(variant)
