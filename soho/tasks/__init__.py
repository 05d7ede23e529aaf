"""Downstream tasks: fine-tuning and evaluation for image/video-text retrieval, VQA, NLVR2 and SNLI-VE."""

TASKS = ("retrieval_coco", "retrieval_flickr30k", "vqa", "nlvr2", "snli_ve", "retrieval_msrvtt")


def variants_for(task: str, variants: tuple[str, ...]) -> tuple[str, ...]:
    """The variants worth training for ``task``.

    A text-only model cannot rank images it never sees: every image ties for every query,
    so its retrieval recall is fixed by the tie rule, not learned. It is skipped there.
    """
    if task.startswith("retrieval"):
        return tuple(v for v in variants if v != "text_only")
    return tuple(variants)
