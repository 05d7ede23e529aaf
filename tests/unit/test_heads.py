"""Task heads and the task model: output shapes per task, the text-only variant ignores the image."""

import pytest
import torch

from soho.models.soho import SohoModel
from soho.tasks import get
from soho.tasks.model import TaskModel
from soho.tasks.retrieval import match_matrix

from ..conftest import tiny_model


@pytest.fixture(scope="module")
def soho():
    torch.manual_seed(0)
    return SohoModel(tiny_model()).eval()


def batch(size=3, pairs=False):
    pixels = torch.randn(size, 2, 3, 64, 64) if pairs else torch.randn(size, 3, 64, 64)
    ids = torch.randint(1000, 2000, (size, 7))
    ids[:, 0] = 101
    return {"pixels": pixels, "input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize(
    ("task", "pairs", "classes"),
    [("vqa", False, 5), ("nlvr2", True, 2), ("snli_ve", False, 3), ("retrieval_coco", False, 2)],
)
def test_logit_shapes(soho, task, pairs, classes):
    answers = [f"a{i}" for i in range(5)] if task == "vqa" else None
    model = TaskModel(soho, get(task), answers=answers).eval()
    with torch.no_grad():
        assert model.logits(batch(pairs=pairs)).shape == (3, classes)
    predictions = model.predict(batch(pairs=pairs))
    assert len(predictions) == 3
    if task == "vqa":
        assert set(predictions) <= set(answers)


def test_text_only_ignores_the_image_and_full_model_does_not(soho):
    text_only = TaskModel(soho, get("snli_ve"), text_only=True).eval()
    full = TaskModel(soho, get("snli_ve")).eval()
    full.head = text_only.head
    first, second = batch(), batch()
    second["input_ids"], second["attention_mask"] = first["input_ids"], first["attention_mask"]
    with torch.no_grad():
        assert torch.equal(text_only.logits(first), text_only.logits(second))
        assert not torch.allclose(full.logits(first), full.logits(second))


def test_match_matrix_equals_pairwise_scores(soho):
    model = TaskModel(soho, get("retrieval_coco")).eval()
    data = batch(size=4)
    matrix = match_matrix(model, data["pixels"][:2], data["input_ids"], data["attention_mask"], chunk=3)
    for image in range(2):
        pairs = dict(data, pixels=data["pixels"][image : image + 1].expand(4, -1, -1, -1))
        assert torch.allclose(matrix[:, image], torch.tensor(model.predict(pairs)), atol=1e-5)


@pytest.mark.parametrize("frames", [None, 3])
def test_rerank_scores_the_itc_top_k_with_itm_and_ranks_them_first(soho, frames):
    model = TaskModel(soho, get("retrieval_msrvtt" if frames else "retrieval_coco")).eval()
    data = batch(size=4)
    pixels = torch.randn(5, *((frames,) if frames else ()), 3, 64, 64, generator=torch.Generator().manual_seed(3))
    full = match_matrix(model, pixels, data["input_ids"], data["attention_mask"], chunk=7)
    reranked = match_matrix(model, pixels, data["input_ids"], data["attention_mask"], chunk=7, rerank_k=2)
    assert full.shape == reranked.shape == (4, 5)
    rescored = reranked >= 0  # ITM probabilities; the rest keep ITC cosine shifted below -1
    assert (rescored.sum(1) >= 2).all() and (rescored.sum(0) >= 2).all()  # top-2 per text and per image
    assert torch.allclose(reranked[rescored], full[rescored], atol=1e-5)  # the same ITM scores
    assert (reranked[~rescored] < -1).all()
    with torch.no_grad():
        visual, _, layout = soho.encode_image(pixels)
        itc = soho.text_embedding(data["input_ids"], data["attention_mask"]) @ soho.image_embedding(visual, layout).t()
    assert torch.equal(rescored.gather(1, itc.topk(2, dim=1).indices), torch.ones(4, 2, dtype=torch.bool))


@pytest.mark.parametrize("rerank_k", [0, 2])
def test_images_encoded_in_chunks_score_as_all_at_once(soho, rerank_k):
    """Issue 16 (f): 5,000 test images cannot go through the CNN in one call; chunked must equal whole."""
    model = TaskModel(soho, get("retrieval_coco")).eval()
    data = batch(size=6)
    pixels = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    calls = []
    encode = soho.encode_image
    soho.encode_image = lambda images, mask=None: calls.append(len(images)) or encode(images, mask)
    try:
        whole = match_matrix(model, pixels, data["input_ids"], data["attention_mask"], chunk=64, rerank_k=rerank_k)
        chunked = match_matrix(model, pixels, data["input_ids"], data["attention_mask"], chunk=2, rerank_k=rerank_k)
    finally:
        del soho.encode_image
    assert calls == [5, 2, 2, 1]
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_recall_is_scored_with_the_variants_own_rerank_k(soho):
    """``finetune.by_variant``: each module carries its protocol; the shared settings' k is not read."""
    from soho.config import FinetuneParams
    from soho.tasks.retrieval import recall_report

    data = batch(size=6)
    inputs = {
        "pixels": torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5)),
        "ids": data["input_ids"],
        "masks": data["attention_mask"],
        "text_image": torch.tensor([0, 0, 1, 1, 2, 2]),
    }
    shared = FinetuneParams(retrieval_rerank_k=0)
    reports = {}
    for k in (0, 1):
        module = TaskModel(soho, get("retrieval_coco"), rerank_k=k).eval()
        reports[k] = recall_report(module, inputs, 0, shared)["_predictions"]
        expected = match_matrix(module, inputs["pixels"], inputs["ids"], inputs["masks"], chunk=64, rerank_k=k)
        assert [p["top5_images"] for p in reports[k]] == expected.topk(3, dim=1).indices.tolist()
    assert reports[0] != reports[1]  # k=1 ranks the ITC top-1 first, whatever ITM says of the others
