"""Downstream tasks: data, heads, fine-tuning and evaluation for retrieval, VQA, NLVR2 and SNLI-VE."""

TASKS = ("retrieval_coco", "retrieval_flickr30k", "vqa", "nlvr2", "snli_ve")
VARIANTS = ("pretrained", "scratch", "text_only")
