"""Downstream metrics against hand-computed cases."""

import pytest
import torch

from soho.eval import metrics


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Two", "2"),
        ("two dogs.", "2 dogs"),
        ("the red one", "red 1"),
        ("an apple", "apple"),
        ("dont", "don't"),
        ("yes!", "yes"),
        ("3.5", "3.5"),
        ("1,000", "1000"),
        ("black/white", "black white"),
        ("  no\n", "no"),
    ],
)
def test_vqa_normalization(raw, normalized):
    assert metrics.normalize_answer(raw) == normalized


def test_vqa_accuracy_leave_one_out():
    # 2 of 10 humans said "2": each of the 8 subsets without a "2" answer keeps 2 -> 2/3; the 2 without one -> 1/3
    answers = ["2", "two", "3", "3", "3", "3", "3", "3", "3", "3"]
    assert metrics.vqa_accuracy("2", answers) == pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)
    assert metrics.vqa_accuracy("3", answers) == pytest.approx(1.0)  # 8 say it: at least 3 in every subset
    assert metrics.vqa_accuracy("4", answers) == 0.0
    # exactly 3 matches: 7 subsets keep all 3 (1.0), 3 subsets keep 2 (2/3)
    assert metrics.vqa_accuracy("Yes.", ["yes"] * 3 + ["no"] * 7) == pytest.approx((7 + 3 * 2 / 3) / 10)


def test_vqa_report_per_answer_type():
    questions = {
        1: {"answers": ["yes"] * 10, "answer_type": "yes/no"},
        2: {"answers": ["2"] * 10, "answer_type": "number"},
    }
    report = metrics.vqa_report({1: "yes", 2: "3"}, questions)
    assert report == {"overall": 50.0, "number": 0.0, "yes_no": 100.0}


def test_retrieval_recall_with_split_captions_and_ties():
    # 2 images, 4 captions: captions 0,1 -> image 0; captions 2,3 -> image 1
    text_image = torch.tensor([0, 0, 1, 1])
    scores = torch.tensor(
        [
            [0.9, 0.1],  # right
            [0.2, 0.8],  # wrong: image 0's captions are split between ranks
            [0.5, 0.5],  # a tie: counted against the model
            [0.1, 0.7],  # right
        ]
    )
    out = metrics.retrieval_metrics(scores, text_image, ks=(1, 2))
    assert out["ir_r1"] == pytest.approx(50.0)  # texts 0 and 3
    assert out["ir_r2"] == pytest.approx(100.0)
    # image 0: best of its captions (0.9, caption 0) ranks first; image 1: best is caption 3 (0.7)
    # but caption 1 (0.8, wrong image) ranks above it
    assert out["tr_r1"] == pytest.approx(50.0)
    assert out["tr_r2"] == pytest.approx(100.0)
    assert out["r_mean"] == pytest.approx(75.0)


def test_constant_scores_get_no_credit_from_ties():
    out = metrics.retrieval_metrics(torch.zeros(10, 10), torch.arange(10), ks=(1,))
    assert out["ir_r1"] == 0.0 and out["tr_r1"] == 0.0


def test_nlvr2_consistency():
    predictions = [1, 0, 1, 1]
    labels = [1, 0, 0, 1]
    groups = ["a", "a", "b", "b"]
    assert metrics.accuracy(predictions, labels) == 75.0
    assert metrics.consistency(predictions, labels, groups) == 50.0
