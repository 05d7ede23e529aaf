"""VQA accuracy against the official evaluator's rules (GT-Vision-Lab/VQA ``vqaEval.py``), by hand.

Every expected score is worked out from the rules, not from a second implementation:
an answer list is normalised only when its ten cleaned answers are not all the same string,
and a question scores the mean over the ten leave-one-out subsets of min(matches / 3, 1).
With m matching answers among ten that is 1.0 for m >= 4, 0.9 for m = 3
((7 * 1 + 3 * 2/3) / 10), 0.6 for m = 2 and 0.3 for m = 1.
"""

import pytest
import torch
from PIL import Image

from soho.data.loaders import LoaderSpec
from soho.eval import metrics
from soho.tasks import vqa


def _three_of_ten(answer: str, filler: str = "no") -> list[str]:
    return [answer] * 3 + [filler] * 7


def test_ten_equal_answers_are_compared_as_typed():
    """No normalisation when all ten agree: case, punctuation, number words and articles all count."""
    assert metrics.vqa_accuracy("yes", ["Yes"] * 10) == 0.0
    assert metrics.vqa_accuracy("yes", ["yes."] * 10) == 0.0
    assert metrics.vqa_accuracy("2", ["two"] * 10) == 0.0
    assert metrics.vqa_accuracy("t shirt", ["t-shirt"] * 10) == 0.0
    assert metrics.vqa_accuracy("red 1", ["the red one"] * 10) == 0.0
    assert metrics.vqa_accuracy("don't", ["dont"] * 10) == 0.0
    assert metrics.vqa_accuracy("Yes", ["Yes"] * 10) == 1.0
    assert metrics.vqa_accuracy("t-shirt", ["t-shirt"] * 10) == 1.0
    # cleaning (newline / tab to space, strip) still comes first, so these ten agree and match
    assert metrics.vqa_accuracy(" yes\t", ["yes\n"] * 9 + ["  yes"]) == 1.0


def test_case_and_punctuation_fold_only_when_the_answers_disagree():
    assert metrics.vqa_accuracy("YES", ["Yes"] * 9 + ["yes"]) == 1.0  # all ten fold to "yes"
    assert metrics.vqa_accuracy("yes", ["yes."] * 9 + ["yes!"]) == 1.0
    assert metrics.vqa_accuracy("yes", ["Yes"] * 10) == 0.0
    assert metrics.vqa_accuracy("1000", _three_of_ten("1,000")) == pytest.approx(0.9)


def test_at_most_32_periods_are_stripped():
    """The evaluator passes ``re.UNICODE`` (32) where ``re.sub`` takes ``count``: 40 periods leave 8."""
    answers = _three_of_ten("yes" + "." * 40)
    assert metrics.vqa_accuracy("yes", answers) == 0.0
    assert metrics.vqa_accuracy("yes" + "." * 40, answers) == pytest.approx(0.9)
    assert metrics.vqa_accuracy("yes" + "." * 8, answers) == 0.0  # the prediction is normalised too: "yes"


def test_digits_in_the_period_rule_are_ascii_only():
    """Python 2's ``\\d`` without ``re.UNICODE`` is 0-9: an Arabic-Indic "3.5" loses its period."""
    assert metrics.vqa_accuracy("\u0663\u0665", _three_of_ten("\u0663.\u0665")) == pytest.approx(0.9)
    assert metrics.vqa_accuracy("3.5", _three_of_ten("3.5")) == pytest.approx(0.9)  # an ASCII digit keeps it


def test_contractions_follow_the_official_table():
    # "shed", "shes" and "wed" are not keys of the official table: they stay words
    assert metrics.vqa_accuracy("she'd", ["shed"] * 4 + ["barn"] * 6) == 0.0
    assert metrics.vqa_accuracy("shed", ["shed"] * 4 + ["barn"] * 6) == 1.0
    assert metrics.vqa_accuracy("she's", _three_of_ten("shes")) == 0.0
    # official keys: "wed've" -> "we'd've", "twas" -> "'twas", "couldnt've" -> "couldn't've"
    assert metrics.vqa_accuracy("we'd've", _three_of_ten("wed've")) == pytest.approx(0.9)
    assert metrics.vqa_accuracy("twas", _three_of_ten("'twas")) == pytest.approx(0.9)
    assert metrics.vqa_accuracy("couldn't've", _three_of_ten("couldnt've")) == pytest.approx(0.9)
    assert metrics.vqa_accuracy("dont", ["don't"] * 2 + ["no"] * 8) == pytest.approx(0.6)


def test_number_words_and_articles_fold_only_when_the_answers_disagree():
    assert metrics.vqa_accuracy("2", ["two"] * 10) == 0.0
    assert metrics.vqa_accuracy("2", ["two"] * 5 + ["2"] * 5) == 1.0
    assert metrics.vqa_accuracy("0", _three_of_ten("none", "1")) == pytest.approx(0.9)  # "none" is 0
    assert metrics.vqa_accuracy("red 1", ["the red one"] * 10) == 0.0
    assert metrics.vqa_accuracy("red 1", _three_of_ten("the red one", "blue")) == pytest.approx(0.9)
    assert metrics.vqa_accuracy("apple", ["an apple"] + ["pear"] * 9) == pytest.approx(0.3)


def test_report_averages_then_rounds_to_two_decimals():
    questions = {
        1: {"answers": ["red"] * 10, "answer_type": "other"},  # right: 1.0
        2: {"answers": ["Blue"] * 10, "answer_type": "other"},  # "blue" against ten typed "Blue": 0.0
        3: {"answers": ["2"] * 10, "answer_type": "other"},  # wrong: 0.0
        4: {"answers": ["yes"] * 10, "answer_type": "yes/no"},  # 1.0
        5: {"answers": ["no"] * 10, "answer_type": "yes/no"},  # 1.0
        6: {"answers": _three_of_ten("Yes"), "answer_type": "yes/no"},  # 0.9
    }
    report = metrics.vqa_report({1: "red", 2: "blue", 3: "3", 4: "yes", 5: "no", 6: "yes"}, questions)
    # other 1/3 -> 33.33; yes/no 2.9/3 -> 96.67; overall 3.9/6 -> 65.0
    assert report == {"overall": 65.0, "other": 33.33, "yes_no": 96.67}


def test_the_vocabulary_emits_strings_the_evaluator_scores(monkeypatch):
    """Classes are normalised answers; each is emitted as its most frequent typed form."""
    train = [[{"answers": ["t-shirt"] * 7 + ["t shirt"] * 3}], [{"answers": ["shed"] * 6 + ["barn"] * 4}]]
    monkeypatch.setattr(vqa, "split_questions", lambda root, split: iter(train))
    vocabulary = vqa.answer_vocabulary(None, 3)
    assert vocabulary == ["t-shirt", "shed", "barn"]
    assert [metrics.vqa_accuracy(a, [a] * 10) for a in vocabulary] == [1.0, 1.0, 1.0]


def test_a_typed_class_trains_on_its_normalised_answers():
    """The target of "t-shirt" is the soft score of the class every "t shirt" / "T-shirt" falls in."""
    spec = LoaderSpec(None, None, 32, 8, 1, 0)
    sample = {"jpg": Image.new("RGB", (32, 32)), "json": {"questions": []}}
    sample["json"]["questions"] = [{"question": "what?", "question_id": 1, "answers": ["t shirt"] * 2 + ["no"] * 8}]
    [out] = vqa.VQA().to_samples(spec, ["t-shirt", "no"], 0)(sample)
    assert out["target"].tolist() == pytest.approx([0.6, 1.0])
    assert torch.is_tensor(out["pixels"])


@pytest.fixture(scope="module")
def test_dev_shards(tiny_raw, tmp_path_factory):
    """The tiny VQA shards plus a test-dev2015 split as the real archives have it: questions, no annotations."""
    import json
    import shutil

    from soho.data import shards

    raw = tmp_path_factory.mktemp("vqa-test-dev") / "raw"
    shutil.copytree(tiny_raw / "vqa", raw / "vqa")
    shutil.copytree(tiny_raw / "coco", raw / "coco")
    val = json.loads((raw / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    questions = [q | {"question_id": q["question_id"] + 10**9} for q in val["questions"][:6]]
    (raw / "vqa" / "v2_OpenEnded_mscoco_test-dev2015_questions.json").write_text(json.dumps({"questions": questions}))
    (raw / "coco" / "test2015").mkdir()
    for image_id in {q["image_id"] for q in questions}:
        source = raw / "coco" / "val2014" / f"COCO_val2014_{image_id:012d}.jpg"
        shutil.copy(source, raw / "coco" / "test2015" / f"COCO_test2015_{image_id:012d}.jpg")
    shards.write_all(["vqa"], raw, raw.parent / "shards", 5, 0.0)
    return raw.parent / "shards", [q["question_id"] for q in questions]


def test_the_test_dev_protocol_trains_on_train_and_val_and_writes_the_evaluai_submission(test_dev_shards):
    """SOHO's VQA protocol (issue 16 l): train2014 + val2014, then test-dev2015 answers for the server, no local score."""
    import random

    from soho.config import FinetuneParams
    from soho.models.fusion import load_tokenizer
    from soho.tasks.base import Scoring

    from ..conftest import tiny_model

    shards_root, test_ids = test_dev_shards
    task, local, server = vqa.VQA(), FinetuneParams(), FinetuneParams(vqa_protocol="test-dev")
    assert (task.training_split(local), task.scoring_splits(local)) == (("train2014",), ("val2014",))
    assert (task.training_split(server), task.scoring_splits(server)) == (("train2014", "val2014"), ("test-dev2015",))
    assert task.scoring_splits(FinetuneParams(vqa_protocol="test-std")) == ("test2015",)
    tokenizer = load_tokenizer("minilm")
    spec = LoaderSpec.build(shards_root, tokenizer, tiny_model(), 0, batch_size=4)
    trained_on = sum(len(b["question_id"]) for b in task.pipeline(task.training_split(server), spec, ["yes", "no"]))
    counted = sum(len(i) for s in ("train2014", "val2014") for i in vqa.split_questions(shards_root, s))
    assert trained_on == counted
    scoring = Scoring(spec, ["yes", "no"], server, {"chance": random.Random(0)})
    [split] = task.scoring_splits(server)
    report = task.evaluate_split({"chance": None}, split, scoring)["chance"]
    rows = report.pop("_predictions")
    assert report == {"questions": len(test_ids)}  # nothing to score locally: EvalAI does
    assert sorted(r["question_id"] for r in rows) == sorted(test_ids)
    assert task.submission({split: rows}) == rows and all(r["answer"] in ("yes", "no") for r in rows)


def test_the_vocabulary_counts_every_training_split(monkeypatch):
    """Under test-dev the classifier trains on train2014 + val2014: an answer only val has is a class too."""
    by_split = {"train2014": [[{"answers": ["red"] * 10}]], "val2014": [[{"answers": ["blue"] * 10}]]}
    monkeypatch.setattr(vqa, "split_questions", lambda root, split: iter(by_split[split]))
    assert vqa.answer_vocabulary(None, 5) == ["red"]
    assert vqa.answer_vocabulary(None, 5, ("train2014", "val2014")) == ["red", "blue"]
