"""Downstream metrics with the official protocols.

Why hand-written: the official VQA evaluation script is a Python 2 era file that is
not packaged on PyPI; its answer normalisation and leave-one-out accuracy are
reproduced here rule for rule and tested against hand-computed cases.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import torch

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

CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "shant": "shan't",
    "shed": "she'd",
    "shes": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "somebodyd": "somebody'd",
    "someoned": "someone'd",
    "someonell": "someone'll",
    "someones": "someone's",
    "thats": "that's",
    "thered": "there'd",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "wasnt": "wasn't",
    "wed": "we'd",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "yall": "y'all",
    "youd": "you'd",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}
NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = {"a", "an", "the"}
PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _process_punctuation(text: str) -> str:
    out = text
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or re.search(_COMMA_STRIP, text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out)


def _process_digits_articles(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = NUMBERS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(answer: str) -> str:
    """The official VQA v2 answer normalisation (punctuation, number words, articles, contractions)."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_digits_articles(_process_punctuation(answer))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """min(#humans that said it / 3, 1), averaged over the 10 leave-one-out subsets of the answers."""
    prediction = normalize_answer(prediction)
    normalized = [normalize_answer(a) for a in answers]
    scores = []
    for i in range(len(normalized)):
        others = normalized[:i] + normalized[i + 1 :]
        scores.append(min(sum(a == prediction for a in others) / 3.0, 1.0))
    return sum(scores) / len(scores)


def vqa_report(predictions: dict[int, str], questions: dict[int, dict]) -> dict:
    """Overall and per-answer-type accuracy (percent) for {question_id: answer}."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for qid, answer in predictions.items():
        q = questions[qid]
        by_type[q["answer_type"]].append(vqa_accuracy(answer, q["answers"]))
    every = [s for scores in by_type.values() for s in scores]
    out = {"overall": 100 * sum(every) / max(len(every), 1)}
    out |= {t.replace("/", "_"): 100 * sum(s) / len(s) for t, s in sorted(by_type.items())}
    return out


def soft_scores(answers: Sequence[str]) -> dict[str, float]:
    """Training targets: each normalised answer's VQA accuracy (leave-one-out averaged)."""
    return {a: vqa_accuracy(a, answers) for a in {normalize_answer(x) for x in answers}}


# --- classification ----------------------------------------------------------------------


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    return 100 * sum(p == y for p, y in zip(predictions, labels, strict=True)) / max(len(labels), 1)


def consistency(predictions: Sequence, labels: Sequence, groups: Sequence[str]) -> float:
    """NLVR2 consistency: percent of sentences whose every example is classified correctly."""
    right: dict[str, bool] = defaultdict(lambda: True)
    for p, y, g in zip(predictions, labels, groups, strict=True):
        right[g] &= p == y
    return 100 * sum(right.values()) / max(len(right), 1)
