"""The task sets: VQA v2 over the COCO-style images, NLVR2 image pairs, SNLI-VE over Flickr30k.

Why: each asks a question the image, not the text, must decide (see ``language``); VQA and
SNLI-VE reuse the scenes of the captioned images they are posed on.
"""

from __future__ import annotations

import random
from pathlib import Path

from soho.config import SyntheticData
from soho.data.embedded import language, scenes
from soho.data.embedded.writing import SPLITS, dump_json, dump_jsonl, png_bytes, sub_rng, write_bytes

VQA_SUBTYPE = {"train": "train2014", "val": "val2014", "test": "val2014"}
NLVR2_SPLIT = {"train": "train", "val": "dev", "test": "test1"}
SNLI_VE_SPLIT = {"train": "train", "val": "dev", "test": "test"}


def write_vqa(root: Path, cfg: SyntheticData, seed: int, coco: list[dict], scene_of: dict) -> None:
    """VQA v2 question and annotation files over the COCO-style images, answers balanced per question text."""
    rng = sub_rng(seed, "vqa")
    by_subtype: dict[str, tuple[list, list]] = {}
    balance: dict[str, language.AnswerBalance] = {}  # per file: each is balanced on its own
    question_id = 1
    for entry in coco:
        subtype = VQA_SUBTYPE[entry["split"]]
        questions, annotations = by_subtype.setdefault(subtype, ([], []))
        scene = scene_of[entry["cocoid"]]
        for _ in range(cfg.vqa_questions_per_image):
            q = language.vqa_question(scene, rng, balance.setdefault(subtype, language.AnswerBalance()))
            answers = language.annotator_answers(q, rng)
            questions.append({"image_id": entry["cocoid"], "question": q.question, "question_id": question_id})
            annotations.append(
                {
                    "question_id": question_id,
                    "image_id": entry["cocoid"],
                    "question_type": q.question_type,
                    "answer_type": q.answer_type,
                    "multiple_choice_answer": language.majority(answers),
                    "answers": [
                        {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
                    ],
                }
            )
            question_id += 1
    for subtype, (questions, annotations) in sorted(by_subtype.items()):
        header = {"task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": subtype}
        dump_json(root / "vqa" / f"v2_OpenEnded_mscoco_{subtype}_questions.json", {**header, "questions": questions})
        dump_json(root / "vqa" / f"v2_mscoco_{subtype}_annotations.json", {**header, "annotations": annotations})


def write_nlvr2(root: Path, cfg: SyntheticData, seed: int) -> None:
    """NLVR2 JSON lines (``identifier``, ``sentence``, ``label``) and ``-img0``/``-img1`` PNG pairs.

    As in NLVR2, one sentence describes a set of four image pairs, two true and two false
    (identifiers ``split-set-pair-0``), so the sentence alone is at chance and consistency
    (all four pairs right) measures grounding.
    """
    rng = sub_rng(seed, "nlvr2")
    for split in SPLITS:
        name = NLVR2_SPLIT[split]
        rows = []
        for pair in range(getattr(cfg.nlvr2, split)):
            if pair % 4 == 0:
                sentence, judge = language.nlvr2_statement(rng)
                wants = rng.sample([True, True, False, False], 4)
            left, right, truth = language.nlvr2_pair(judge, wants[pair % 4], rng, cfg.max_objects)
            stem = f"{name}-{pair // 4}-{pair % 4}"
            write_bytes(
                root / "nlvr2" / "images" / name / f"{stem}-img0.png",
                png_bytes(scenes.render(left, cfg.image_size, rng)),
            )
            write_bytes(
                root / "nlvr2" / "images" / name / f"{stem}-img1.png",
                png_bytes(scenes.render(right, cfg.image_size, rng)),
            )
            rows.append({"identifier": f"{stem}-0", "sentence": sentence, "label": "True" if truth else "False"})
        dump_jsonl(root / "nlvr2" / f"{name}.json", rows)


def snli_ve_hypothesis(scene: scenes.Scene, rng: random.Random, max_objects: int) -> tuple[str, str]:
    """(hypothesis, gold label), balanced so that the text alone decides no label.

    Four equally likely kinds: true (entailment), true + undecidable clause (neutral), false
    (contradiction), false + undecidable clause (contradiction). A hypothesis with the clause
    is neutral or contradiction, one without is entailment or contradiction, each at even odds:
    text alone scores at most 50%; the image decides the rest (labels 1/4, 1/4, 1/2).
    """
    true, clause = rng.random() < 0.5, rng.random() < 0.5
    if true:
        statement = scenes.true_statement(scene, rng, objects_only=clause)
    else:
        statement = scenes.false_statement(scene, rng, max_objects, objects_only=clause)
    if clause:
        return scenes.undecidable(statement, rng), "neutral" if true else "contradiction"
    return statement, "entailment" if true else "contradiction"


def write_snli_ve(root: Path, cfg: SyntheticData, seed: int, scene_of: dict) -> None:
    """SNLI-VE JSON lines over the Flickr30k-style images, all three labels (see ``snli_ve_hypothesis``)."""
    rng = sub_rng(seed, "snli_ve")
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}  # written under SNLI_VE_SPLIT names
    pair_id = 0
    for filename, (scene, split) in scene_of.items():
        for _ in range(cfg.snli_ve_hypotheses_per_image):
            hypothesis, label = snli_ve_hypothesis(scene, rng, cfg.max_objects)
            rows[split].append(
                {
                    "Flikr30kID": filename,
                    "sentence1": scenes.caption(scene, rng),
                    "sentence2": hypothesis,
                    "gold_label": label,
                    "pairID": f"{filename}#{pair_id}",
                }
            )
            pair_id += 1
    for split, split_rows in rows.items():
        dump_jsonl(root / "snli_ve" / f"snli_ve_{SNLI_VE_SPLIT[split]}.jsonl", split_rows)
