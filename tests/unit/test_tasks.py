"""The task registry and per-task fine-tuning parameters."""

import re
from pathlib import Path

import pytest

from soho.config import ConfigError, load_params, with_overrides
from soho.data.catalog import DATASETS
from soho.tasks import REGISTRY, TASKS, finetune_params, get

from ..conftest import REPO


def test_every_task_reads_a_catalogued_data_set_and_is_found_by_name():
    assert TASKS == ("retrieval_coco", "retrieval_flickr30k", "vqa", "nlvr2", "snli_ve", "retrieval_msrvtt")
    for name in TASKS:
        task = get(name)
        assert task.name == name and task.dataset in DATASETS
        assert task.train_split and task.eval_splits
    with pytest.raises(ConfigError, match=r"unknown task 'captioning' \(known: \["):
        get("captioning")


def test_retrieval_has_no_text_only_variant_and_the_others_keep_every_variant():
    every = ("pretrained", "pretrained_scl", "scratch", "text_only")
    assert get("retrieval_coco").variants(every) == ("pretrained", "pretrained_scl", "scratch")
    assert get("vqa").variants(every) == every


def test_a_task_override_merges_over_the_shared_fine_tuning_parameters():
    params = load_params(REPO / "params.yaml")
    shared = params.finetune
    tuned = with_overrides(params, {"finetune.tasks": {"vqa": {"answer_vocab": 32, "optim": {"steps": 100}}}})
    vqa, nlvr2 = finetune_params(tuned, "vqa"), finetune_params(tuned, "nlvr2")
    assert vqa.optim.steps == 100 and vqa.answer_vocab == 32
    assert vqa.optim.batch_size == shared.optim.batch_size and vqa.optim.lr == shared.optim.lr  # the rest is shared
    assert nlvr2.optim == shared.optim and nlvr2.answer_vocab == shared.answer_vocab
    untuned = [task for task in TASKS if task not in params.finetune.tasks]
    assert untuned, "params.yaml tunes every task: nothing left to show the shared values on"
    assert all(finetune_params(params, task) == shared for task in untuned)


def test_a_bad_task_override_names_its_dotted_key():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ConfigError, match=r"tasks\.vqa\.optim\.steps: Input should be greater than 0"):
        with_overrides(params, {"finetune.tasks": {"vqa": {"optim": {"steps": 0}}}})
    with pytest.raises(ConfigError, match=r"tasks\.nlvr2\.optim\.stepz: Extra inputs are not permitted"):
        with_overrides(params, {"finetune.tasks": {"nlvr2": {"optim": {"stepz": 5}}}})
    unknown = with_overrides(params, {"finetune.tasks": {"vqaa": {"optim": {"steps": 5}}}})
    with pytest.raises(ConfigError, match=r"finetune\.tasks: unknown task\(s\) \['vqaa'\]"):
        finetune_params(unknown, "vqa")


def test_no_code_outside_the_task_modules_branches_on_a_task_name():
    names = "|".join(REGISTRY)
    branch = re.compile(rf"""task(\.name)?\s*(==|!=|in)\s*\(?["'](?:{names})|task\.startswith\(""")
    task_modules = {p.name for p in (REPO / "soho" / "tasks").glob("*.py")} - {"__init__.py"}
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in [*Path(REPO / "soho").rglob("*.py"), *Path(REPO / "stages").glob("*.py")]
        if not (path.parent.name == "tasks" and path.name in task_modules)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if branch.search(line)
    ]
    assert offenders == []


def test_msrvtt_fine_tunes_and_scores_on_the_split_its_protocol_names():
    from soho.config import FinetuneParams

    task = get("retrieval_msrvtt")
    assert (task.training_split(FinetuneParams()), task.scoring_splits(FinetuneParams())) == ("train", ("test",))
    one_k = FinetuneParams(msrvtt_split="1k-A")
    assert (task.training_split(one_k), task.scoring_splits(one_k)) == ("train_9k", ("test_1k",))
    assert get("retrieval_coco").scoring_splits(one_k) == ("test",)  # images: no such protocol


def test_msrvtt_1k_a_metrics_are_stored_as_the_test_split_the_report_and_bands_read(monkeypatch):
    """Under 1k-A the shards' split is ``test_1k``; the table's MSR-VTT row and SCL's numbers read ``test``."""
    from types import SimpleNamespace

    from soho.config import FinetuneParams
    from soho.tasks import evaluation

    task = get("retrieval_msrvtt")
    scored = []

    class Stub(type(task)):
        def evaluate_split(self, variants, split, scoring):
            scored.append(split)
            return {name: {"r_mean": 1.0} for name in variants}

    monkeypatch.setattr(evaluation, "get", lambda name: Stub(task.name, task.dataset, video=True))
    monkeypatch.setattr(evaluation, "finetune_params", lambda params, name: FinetuneParams(msrvtt_split="1k-A"))
    monkeypatch.setattr(evaluation, "evaluation_spec", lambda *args: None)
    monkeypatch.setattr(evaluation, "load_tokenizer", lambda init: None)
    params = SimpleNamespace(
        model=SimpleNamespace(text=SimpleNamespace(init="minilm")), paths=SimpleNamespace(shards="."), seed=0
    )
    assert evaluation.evaluate(params, "retrieval_msrvtt", {"chance": None}) == {"chance": {"test": {"r_mean": 1.0}}}
    assert scored == ["test_1k"]
    assert get("retrieval_coco").result_split("test") == "test"


def test_a_variant_override_applies_to_that_variant_alone_after_the_tasks():
    """A variant's own settings (e.g. SOHO + SCL fine-tuning retrieval with ITC) apply to it alone, over the task's."""
    params = load_params(REPO / "params.yaml")
    tuned = with_overrides(
        params,
        {
            "finetune.retrieval_rerank_k": 0,
            "finetune.tasks": {"vqa": {"optim": {"steps": 100}}},
            "finetune.by_variant": {"pretrained_scl": {"retrieval_rerank_k": 10, "optim": {"lr": 0.002}}},
        },
    )
    scl, soho = finetune_params(tuned, "vqa", "pretrained_scl"), finetune_params(tuned, "vqa", "pretrained")
    assert (scl.retrieval_rerank_k, scl.optim.lr, scl.optim.steps) == (10, 0.002, 100)  # the task's steps kept
    assert (soho.retrieval_rerank_k, soho.optim.lr, soho.optim.steps) == (0, params.finetune.optim.lr, 100)
    assert finetune_params(tuned, "nlvr2", "pretrained_scl").optim.steps == params.finetune.optim.steps
    assert finetune_params(tuned, "vqa") == finetune_params(tuned, "vqa", "scratch")  # no overrides of its own


def test_a_bad_variant_override_names_its_key():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ConfigError, match=r"by_variant\.scratch\.optim\.steps: Input should be greater than 0"):
        with_overrides(params, {"finetune.by_variant": {"scratch": {"optim": {"steps": 0}}}})
    with pytest.raises(ConfigError) as err:
        with_overrides(params, {"finetune.by_variant": {"pretrained_scl": {"eval_batch_size": 8}}})
    assert str(err.value).splitlines()[1] == (  # named once, not nested in a task's copy of the section
        "  finetune: Value error, by_variant.pretrained_scl.eval_batch_size: cannot be set per variant "
        "(only optim, retrieval_itc, retrieval_rerank_k, vd)"
    )
    with pytest.raises(ConfigError, match=r"finetune\.by_variant\.scl"):
        with_overrides(params, {"finetune.by_variant": {"scl": {"retrieval_rerank_k": 10}}})


def test_a_variant_is_built_and_reloaded_with_its_own_retrieval_protocol(tmp_path):
    from soho.tasks.run import build

    params = with_overrides(
        load_params(REPO / "params.yaml"),
        {
            "finetune.retrieval_itc": 0.0,
            "finetune.retrieval_rerank_k": 0,
            "finetune.by_variant": {"pretrained_scl": {"retrieval_itc": 1.0, "retrieval_rerank_k": 10}},
        },
    )
    scl = build(params, "retrieval_coco", "pretrained_scl", None, pretrained=False)
    scratch = build(params, "retrieval_coco", "scratch", None)
    assert (scl.itc_weight, scl.rerank_k, scratch.itc_weight, scratch.rerank_k) == (1.0, 10, 0.0, 0)
