import hashlib
import json
from collections import Counter
from pathlib import Path

from soho.data import formats
from soho.data.catalog import DATASETS, VG_IMAGE_FOLDERS
from soho.data.embedded import datasets, task_sets

from ..conftest import REPO, tiny_data


def tree_sha256(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_gives_byte_identical_tree(tmp_path, tiny_raw):
    again = datasets.generate(tmp_path / "again", tiny_data(), seed=0)
    assert tree_sha256(again) == tree_sha256(tiny_raw)
    other = datasets.generate(tmp_path / "other", tiny_data(), seed=1)
    assert tree_sha256(other) != tree_sha256(tiny_raw)


def test_regenerating_replaces_the_tree(tmp_path):
    target = tmp_path / "raw"
    datasets.generate(target, tiny_data(), seed=0)
    (target / "stray.txt").write_text("left over")
    datasets.generate(target, tiny_data(), seed=0)
    assert not (target / "stray.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".raw")]


def test_every_format_is_written_and_sized_by_params(tiny_raw):
    cfg = tiny_data()
    coco = formats.read_karpathy(tiny_raw / "coco" / "dataset_coco.json", tiny_raw / "coco")
    assert Counter(r.split for r in coco) == {"train": 12, "val": 4, "test": 4}
    assert all(len(r.captions) == cfg.captions_per_image and r.path.exists() for r in coco)
    flickr = formats.read_karpathy(
        tiny_raw / "flickr30k" / "dataset_flickr30k.json", tiny_raw / "flickr30k" / "flickr30k-images"
    )
    assert len(flickr) == 12 and all(r.path.exists() for r in flickr)
    vg = formats.read_vg_regions(
        tiny_raw / "vg" / "region_descriptions.json", [tiny_raw / "vg" / f for f in VG_IMAGE_FOLDERS]
    )
    assert len(vg) == 5 and all(r.path.exists() for r in vg)
    assert {r.path.parent.name for r in vg} == set(VG_IMAGE_FOLDERS)  # both archives' folders, as the real VG
    for split, name in task_sets.NLVR2_SPLIT.items():
        rows = formats.read_nlvr2(tiny_raw / "nlvr2" / f"{name}.json", tiny_raw / "nlvr2" / "images" / name)
        assert len(rows) == getattr(cfg.nlvr2, split)
        assert all(r.left.exists() and r.right.exists() for r in rows)
    videos = formats.read_msrvtt(tiny_raw / "msrvtt" / "MSRVTT_data.json", tiny_raw / "msrvtt" / "videos" / "all")
    assert Counter(v.split for v in videos) == {"train": 4, "validate": 2, "test": 2}
    assert all(v.path.suffix == ".mp4" and v.path.exists() and v.captions for v in videos)  # tiny_data: mp4


def test_splits_have_disjoint_images(tiny_raw):
    for name in ("coco", "flickr30k", "snli_ve", "msrvtt"):
        seen: dict[str, str] = {}
        for split, samples in DATASETS[name](tiny_raw).items():
            for sample in samples:
                for path in sample.media.values():
                    assert seen.setdefault(str(path), split) == split, f"{name}: {path} in two splits"


def test_vqa_has_ten_answers_with_some_disagreement(tiny_raw):
    questions = formats.read_vqa(
        tiny_raw / "vqa" / "v2_OpenEnded_mscoco_train2014_questions.json",
        tiny_raw / "vqa" / "v2_mscoco_train2014_annotations.json",
    )
    assert questions and all(len(q.answers) == 10 for q in questions)
    assert any(len(set(q.answers)) > 1 for q in questions)
    assert {q.answer_type for q in questions} <= {"yes/no", "number", "other"}


def test_labels_cover_every_class(tmp_path):
    raw = datasets.generate(tmp_path / "raw", tiny_data().model_copy(update={"snli_ve_hypotheses_per_image": 6}), 3)
    labels = Counter(r.label for r in formats.read_snli_ve(raw / "snli_ve" / "snli_ve_train.jsonl", raw / "flickr30k"))
    assert set(labels) == {"entailment", "contradiction", "neutral"}
    rows = [json.loads(line) for line in (raw / "nlvr2" / "train.json").read_text().splitlines()]
    assert {r["label"] for r in rows} == {"True", "False"}


def test_nlvr2_sentence_describes_four_pairs_two_true_two_false(tmp_path):
    """As NLVR2 was built: the sentence alone is at chance, consistency groups are real."""
    data = tiny_data().model_copy(update={"nlvr2": tiny_data().nlvr2.model_copy(update={"train": 40})})
    raw = datasets.generate(tmp_path / "raw", data, seed=2)
    rows = [json.loads(line) for line in (raw / "nlvr2" / "train.json").read_text().splitlines()]
    sets: dict[str, list[dict]] = {}
    for row in rows:
        split, set_id, _pair, _sentence = row["identifier"].split("-")
        sets.setdefault(f"{split}-{set_id}", []).append(row)
    assert len(sets) == 10
    for group in sets.values():
        assert len({r["sentence"] for r in group}) == 1
        assert Counter(r["label"] for r in group) == {"True": 2, "False": 2}


def test_snli_ve_text_alone_scores_at_most_half():
    """No hypothesis template gives its label away: the best text-only rule is a coin flip per template."""
    import random

    from soho.data.embedded import scenes

    rng = random.Random(0)
    rows = [task_sets.snli_ve_hypothesis(scenes.sample_scene(rng, 3), rng, 3) for _ in range(3000)]
    labels = Counter(label for _, label in rows)
    assert abs(labels["entailment"] / 3000 - 0.25) < 0.03 and abs(labels["neutral"] / 3000 - 0.25) < 0.03
    by_template: dict[tuple, Counter] = {}
    for text, label in rows:
        words = text.split()
        template = (" that " in text, words[1] in ("are", "is") and words[-1].startswith("shape"))
        by_template.setdefault(template, Counter())[label] += 1
    best = sum(c.most_common(1)[0][1] for c in by_template.values()) / len(rows)
    assert best < 0.55
    counts = [t for t, _ in rows if t.split()[-1].startswith("shape")]
    assert all(t.split()[2] in ("one", "two", "three") for t in counts)  # no count beyond max_objects


def test_vqa_question_text_alone_is_near_chance():
    """As VQA v2 was balanced: the answer a question's text most often had in training is
    right on held-out images little more often than chance (before: 'how many' 57%, mostly 0)."""
    import random

    from soho.data.embedded import language, scenes

    def draw(rng, n):
        balance = language.AnswerBalance()
        return [language.vqa_question(scenes.sample_scene(rng, 3), rng, balance) for _ in range(n)]

    rng = random.Random(1)
    train, held_out = draw(rng, 4000), draw(rng, 1000)
    prior: dict[str, Counter] = {}  # per question text, and per question type for unseen texts
    for q in train:
        prior.setdefault(q.question, Counter())[q.answer] += 1
        prior.setdefault(q.question_type, Counter())[q.answer] += 1
    right: dict[str, list[bool]] = {}
    for q in held_out:
        guess = prior.get(q.question, prior[q.question_type]).most_common(1)[0][0]
        right.setdefault(q.question_type, []).append(guess == q.answer)
    rates = {kind: sum(hits) / len(hits) for kind, hits in right.items()}
    assert set(rates) == {"what color is the", "what is the", "how many", "is there a", "is the"}
    assert rates["how many"] < 0.4 and rates["is there a"] < 0.58 and rates["is the"] < 0.58, rates
    assert rates["what color is the"] < 0.3 and rates["what is the"] < 0.35, rates


def test_vqa_relation_questions_are_balanced_per_relation_and_right_on_both_axes():
    import random

    from soho.data.embedded import language, scenes

    rng, balance = random.Random(0), language.AnswerBalance()
    answers: dict[str, Counter] = {r: Counter() for r in scenes.RELATIONS}
    while sum(sum(c.values()) for c in answers.values()) < 4000:
        scene = scenes.sample_scene(rng, 3)
        question = language.vqa_question(scene, rng, balance)
        if question.question_type == "is the":
            asked = next(r for r in scenes.RELATIONS if f" {r} the " in question.question)
            answers[asked][question.answer] += 1
    for asked, counts in answers.items():
        assert abs(counts["yes"] / sum(counts.values()) - 0.5) < 0.05, asked
    # a thing left of and above another is "above" it too (both axes count)
    a = scenes.Thing("circle", "red", "small", "left", "top")
    b = scenes.Thing("square", "blue", "small", "right", "bottom")
    assert scenes.relation_holds(a, b, "above") and scenes.relation_holds(a, b, "left of")
    assert not scenes.relation_holds(a, b, "below") and not scenes.relation_holds(a, b, "right of")


def test_the_embedded_run_decodes_real_video_and_gif_stays_an_option(tmp_path):
    """The default run writes H.264 MP4 clips, as the real MSR-VTT (its bands were made so); GIF only when asked."""
    from soho.config import load_params
    from soho.sections import SyntheticData

    assert load_params(REPO / "params.yaml").data.clip_format == "mp4" == SyntheticData().clip_format
    raw = datasets.generate(tmp_path / "raw", tiny_data().model_copy(update={"clip_format": "gif"}), seed=0)
    assert sorted(p.suffix for p in (raw / "msrvtt" / "videos" / "all").iterdir()) == [".gif"] * 8
