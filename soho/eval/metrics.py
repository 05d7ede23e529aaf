"""Downstream metrics with the official protocols.

Why hand-written: the official VQA evaluation script is a Python 2 era file that is
not packaged on PyPI; its answer normalisation and leave-one-out accuracy are
reproduced here rule for rule and tested against hand-computed cases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from soho.eval import vqa_tables as tables

# --- retrieval -------------------------------------------------------------------------


def _rank_of_best(scores: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Rank (0 = first) of the best-scored correct column per row; ties count against (pessimistic).

    Why pessimistic: a model that scores everything equally must get chance recall,
    not a perfect one.
    """
    best = scores.masked_fill(~correct, float("-inf")).amax(1, keepdim=True)
    return ((scores >= best) & ~correct).sum(1) + (correct & (scores >= best)).sum(1) - 1


def retrieval_metrics(scores: torch.Tensor, text_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Karpathy-protocol recall from a (texts, images) score matrix and each text's image index.

    Text retrieval (image query): correct when any of the image's captions ranks within K.
    Image retrieval (text query): correct when its image ranks within K.
    """
    texts, images = scores.shape
    correct = text_image[:, None] == torch.arange(images)[None, :]  # (texts, images)
    image_rank = _rank_of_best(scores, correct)  # text query -> its image
    text_rank = _rank_of_best(scores.t(), correct.t())  # image query -> best of its captions
    out = {}
    for k in ks:
        out[f"tr_r{k}"] = (text_rank < k).float().mean().item() * 100
        out[f"ir_r{k}"] = (image_rank < k).float().mean().item() * 100
    out["r_mean"] = sum(out.values()) / len(out)
    out["ir_median_rank"] = float(image_rank.float().median().item() + 1)
    out["tr_median_rank"] = float(text_rank.float().median().item() + 1)
    return out


# --- VQA ---------------------------------------------------------------------------------


def clean_answer(answer: str) -> str:
    """What the official evaluator does to every answer first: newlines and tabs to spaces, then strip."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


def _process_punctuation(text: str) -> str:
    """``processPunctuation``: a mark next to a space, or any digit-comma-digit, goes; else it becomes a space."""
    out = text
    drop = tables.COMMA_STRIP.search(text) is not None
    for p in tables.PUNCTUATION:
        out = out.replace(p, "" if drop or p + " " in text or " " + p in text else " ")
    return tables.PERIOD_STRIP.sub("", out, count=tables.PERIOD_STRIP_COUNT)


def _process_digits_articles(text: str) -> str:
    """``processDigitArticle``: lower-case, number words to digits, no articles, then contractions."""
    words = [tables.NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(tables.CONTRACTIONS.get(w, w) for w in words if w not in tables.ARTICLES)


def normalize_answer(answer: str) -> str:
    """The official answer normalisation: cleaned, punctuation, then number words, articles, contractions.

    The evaluator applies it only to questions whose ten answers disagree (see :func:`vqa_accuracy`).
    """
    return _process_digits_articles(_process_punctuation(clean_answer(answer)))


def _leave_one_out(prediction: str, answers: Sequence[str]) -> float:
    """min(matches / 3, 1) averaged over the subsets that leave out one answer each."""
    scores = []
    for i in range(len(answers)):
        matches = sum(a == prediction for j, a in enumerate(answers) if j != i)
        scores.append(min(matches / 3.0, 1.0))
    return sum(scores) / len(scores)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official per-question accuracy (0..1) of ``prediction`` against the ten human answers.

    As ``vqaEval.py`` does it: answers and prediction are cleaned; only when the cleaned answers
    are not all the same string are they and the prediction normalised. When all ten agree the
    strings are compared as typed, so "Yes" against ten "yes" scores 0. Each answer is left out
    once by position (the evaluator leaves out one answer record, and the ten records differ by
    their ``answer_id``).
    """
    prediction, answers = clean_answer(prediction), [clean_answer(a) for a in answers]
    if len(set(answers)) > 1:
        prediction = _process_digits_articles(_process_punctuation(prediction))
        answers = [_process_digits_articles(_process_punctuation(a)) for a in answers]
    return _leave_one_out(prediction, answers)


def _percent(scores: Sequence[float]) -> float:
    """``setAccuracy``: the mean in percent, rounded to 2 decimals as the evaluator reports it."""
    return round(100 * sum(scores) / max(len(scores), 1), 2)


def vqa_report(predictions: dict[int, str], questions: dict[int, dict]) -> dict:
    """Overall and per-answer-type accuracy (percent, 2 decimals) for {question_id: answer}.

    Each is the mean over questions of :func:`vqa_accuracy`, rounded only at the end (``setAccuracy``).
    """
    by_type: dict[str, list[float]] = defaultdict(list)
    for qid, answer in predictions.items():
        q = questions[qid]
        by_type[q["answer_type"]].append(vqa_accuracy(answer, q["answers"]))
    every = [s for scores in by_type.values() for s in scores]
    return {"overall": _percent(every)} | {t.replace("/", "_"): _percent(s) for t, s in sorted(by_type.items())}


def soft_scores(answers: Sequence[str]) -> dict[str, float]:
    """Training targets: each normalised answer's leave-one-out score among the normalised answers.

    Why always normalised (unlike :func:`vqa_accuracy`): the classifier's classes are normalised
    answers, so "Yes" and "yes" train one class; which surface string a class emits is chosen
    when the vocabulary is built (``soho.tasks.vqa.answer_vocabulary``).
    """
    normalized = [normalize_answer(a) for a in answers]
    return {a: _leave_one_out(a, normalized) for a in set(normalized)}


# --- classification ----------------------------------------------------------------------


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    return 100 * sum(p == y for p, y in zip(predictions, labels, strict=True)) / max(len(labels), 1)


def consistency(predictions: Sequence, labels: Sequence, groups: Sequence[str]) -> float:
    """NLVR2 consistency: percent of sentences whose every example is classified correctly."""
    right: dict[str, bool] = defaultdict(lambda: True)
    for p, y, g in zip(predictions, labels, groups, strict=True):
        right[g] &= p == y
    return 100 * sum(right.values()) / max(len(right), 1)
