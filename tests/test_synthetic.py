import hashlib
import json
from collections import Counter
from pathlib import Path

from soho.data import formats, synthetic
from soho.data.catalog import DATASETS

from .conftest import tiny_data


def tree_sha256(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_gives_byte_identical_tree(tmp_path, tiny_raw):
    again = synthetic.generate(tmp_path / "again", tiny_data(), seed=0)
    assert tree_sha256(again) == tree_sha256(tiny_raw)
    other = synthetic.generate(tmp_path / "other", tiny_data(), seed=1)
    assert tree_sha256(other) != tree_sha256(tiny_raw)


def test_regenerating_replaces_the_tree(tmp_path):
    target = tmp_path / "raw"
    synthetic.generate(target, tiny_data(), seed=0)
    (target / "stray.txt").write_text("left over")
    synthetic.generate(target, tiny_data(), seed=0)
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
    assert len(formats.read_vg_regions(tiny_raw / "vg" / "region_descriptions.json", tiny_raw / "vg" / "VG_100K")) == 5
    for split, name in synthetic.NLVR2_SPLIT.items():
        rows = formats.read_nlvr2(tiny_raw / "nlvr2" / f"{name}.json", tiny_raw / "nlvr2" / "images" / name)
        assert len(rows) == getattr(cfg.nlvr2, split)
        assert all(r.left.exists() and r.right.exists() for r in rows)
    videos = formats.read_msrvtt(tiny_raw / "msrvtt" / "MSRVTT_data.json", tiny_raw / "msrvtt" / "videos" / "all")
    assert Counter(v.split for v in videos) == {"train": 4, "validate": 2, "test": 2}
    assert all(v.path.suffix == ".gif" and v.path.exists() and v.captions for v in videos)


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
    raw = synthetic.generate(tmp_path / "raw", tiny_data().model_copy(update={"snli_ve_hypotheses_per_image": 6}), 3)
    labels = Counter(r.label for r in formats.read_snli_ve(raw / "snli_ve" / "snli_ve_train.jsonl", raw / "flickr30k"))
    assert set(labels) == {"entailment", "contradiction", "neutral"}
    rows = [json.loads(line) for line in (raw / "nlvr2" / "train.json").read_text().splitlines()]
    assert {r["label"] for r in rows} == {"True", "False"}
