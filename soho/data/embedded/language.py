"""Task language derived from scene graphs: VQA questions, NLVR2 statements, clip captions.

Why: every label is computed from the scene graph, so the embedded tasks have a
known truth; answer noise is added on purpose so VQA soft scores matter.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from soho.data.embedded.scenes import (
    COLORS,
    NUMBER_WORDS,
    RELATIONS,
    SHAPES,
    Scene,
    _article,
    relation_holds,
    sample_scene,
)

DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    answer_type: str  # "yes/no" | "number" | "other"
    question_type: str


KINDS = ("color", "count", "exists", "relation", "shape")


def vqa_candidates(scene: Scene) -> dict[str, list[Question]]:
    """Every question of each kind this scene can answer (a kind may have none)."""
    things = scene.things
    pairs = [(a, b) for a in things for b in things if a is not b]
    return {
        "color": [
            Question(f"what color is the {t.shape}?", t.color, "other", "what color is the")
            for t in things
            if scene.count(t.shape) == 1
        ],
        "count": [
            Question(f"how many {shape}s are there?", str(scene.count(shape)), "number", "how many") for shape in SHAPES
        ],
        "exists": [
            Question(
                f"is there {_article(color)} {color} {shape}?",
                "yes" if scene.count(shape, color) else "no",
                "yes/no",
                "is there a",
            )
            for shape in SHAPES
            for color in COLORS
        ],
        "relation": [
            Question(
                f"is the {a.color} {a.shape} {asked} the {b.color} {b.shape}?",
                "yes" if relation_holds(a, b, asked) else "no",
                "yes/no",
                "is the",
            )
            for a, b in pairs
            for asked in RELATIONS
        ],
        "shape": [
            Question(f"what shape is the {t.color} object?", t.shape, "other", "what is the")
            for t in things
            if scene.count(color=t.color) == 1
        ],
    }


# How many answers a question text can have, by answer type (counts: 0..3 in the embedded world).
_ANSWER_CHOICES = {"yes/no": 2, "number": 4, "what color is the": len(COLORS), "what is the": len(SHAPES)}


class AnswerBalance:
    """Per question text, the answers given so far: VQA v2's balancing, done as the set is drawn.

    Why: VQA v2 paired each question with a similar image whose answer differs, so a question's
    words alone do not give its answer. Here each image's question is the candidate whose answer
    is the most under-represented for its exact text so far, so answers even out per text and a
    text-only model falls towards chance (``how many circles`` is not mostly 0).
    """

    def __init__(self) -> None:
        self.seen: dict[str, Counter] = {}

    def deficit(self, question: Question) -> float:
        counts = self.seen.get(question.question, Counter())
        choices = _ANSWER_CHOICES.get(question.answer_type) or _ANSWER_CHOICES[question.question_type]
        return counts[question.answer] - sum(counts.values()) / choices

    def pick(self, candidates: list[Question], rng: random.Random) -> Question:
        lowest = min(self.deficit(q) for q in candidates)
        tied = [q for q in candidates if self.deficit(q) == lowest]
        answer = rng.choice(sorted({q.answer for q in tied}))  # answers at even odds, not candidates
        chosen = rng.choice([q for q in tied if q.answer == answer])
        self.seen.setdefault(chosen.question, Counter())[chosen.answer] += 1
        return chosen


def vqa_question(scene: Scene, rng: random.Random, balance: AnswerBalance) -> Question:
    """One question about the scene: a kind at random, then the question of that kind ``balance`` needs."""
    candidates = vqa_candidates(scene)
    kind = rng.choice([k for k in KINDS if candidates[k]])
    return balance.pick(candidates[kind], rng)


def annotator_answers(question: Question, rng: random.Random, n: int = 10) -> list[str]:
    """Ten human-like answers: mostly the truth, some disagreement and surface variants."""
    wrong_count = rng.choice([0, 0, 0, 1, 1, 2, 3, 4])
    answers = []
    for i in range(n):
        if i < wrong_count:
            answers.append(_plausible_wrong(question, rng))
        else:
            answers.append(_surface_variant(question.answer, rng))
    rng.shuffle(answers)
    return answers


def _plausible_wrong(question: Question, rng: random.Random) -> str:
    if question.answer_type == "yes/no":
        return "no" if question.answer == "yes" else "yes"
    if question.answer_type == "number":
        return str(max(0, int(question.answer) + rng.choice([-1, 1])))
    pool = list(COLORS) if question.answer in COLORS else list(SHAPES)
    return rng.choice([p for p in pool if p != question.answer])


def _surface_variant(answer: str, rng: random.Random) -> str:
    """The same answer as people type it: number words, capitals, trailing punctuation."""
    roll = rng.random()
    if answer.isdigit() and roll < 0.3:
        return NUMBER_WORDS[int(answer)]
    if roll < 0.1:
        return answer.capitalize()
    if roll < 0.15:
        return answer + "."
    return answer


def majority(answers: list[str]) -> str:
    return Counter(answers).most_common(1)[0][0]


def nlvr2_statement(rng: random.Random) -> tuple[str, Callable[[Scene, Scene], bool]]:
    """A statement about an image pair and the test that decides it for a (left, right) pair."""
    kind = rng.choice(["side", "total", "both", "more"])
    shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
    if kind == "side":
        side = rng.choice(["left", "right"])
        return (
            f"the {side} image contains {_article(color)} {color} {shape}",
            lambda left, right: (left if side == "left" else right).count(shape, color) > 0,
        )
    if kind == "total":
        n = rng.randint(1, 4)
        noun = shape if n == 1 else f"{shape}s"
        return (
            f"there {'is' if n == 1 else 'are'} exactly {NUMBER_WORDS[n]} {noun} in total",
            lambda left, right: left.count(shape) + right.count(shape) == n,
        )
    if kind == "both":
        return (
            f"both images contain {_article(shape)} {shape}",
            lambda left, right: left.count(shape) > 0 and right.count(shape) > 0,
        )
    return (
        "the right image has more shapes than the left image",
        lambda left, right: len(right.things) > len(left.things),
    )


def nlvr2_pair(
    judge: Callable[[Scene, Scene], bool], want: bool, rng: random.Random, max_objects: int, tries: int = 500
) -> tuple[Scene, Scene, bool]:
    """Sample (left, right) scenes until the statement's truth is ``want`` (the last draw if none is)."""
    for _ in range(tries):
        left, right = sample_scene(rng, max_objects), sample_scene(rng, max_objects)
        if judge(left, right) == want:
            break
    return left, right, judge(left, right)


def clip_caption(moves: list[tuple[str, str, str]], rng: random.Random) -> str:
    """Caption of a clip from (color, shape, direction) triples."""
    verb = rng.choice(["moves", "is moving", "goes", "slides"])
    parts = []
    for color, shape, direction in moves:
        where = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}[direction]
        parts.append(f"{_article(color)} {color} {shape} {verb} {where}")
    return " while ".join(parts)
