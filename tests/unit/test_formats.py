"""Each reader on small fixtures written by hand from the official schemas."""

import json

import pytest

from soho.data import formats


def dump(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def test_karpathy_coco_with_restval_and_filepath(tmp_path):
    path = dump(
        tmp_path / "dataset_coco.json",
        {
            "images": [
                {
                    "filepath": "val2014",
                    "sentids": [770337, 771687],
                    "filename": "COCO_val2014_000000391895.jpg",
                    "imgid": 0,
                    "split": "restval",
                    "sentences": [
                        {
                            "tokens": ["a", "man"],
                            "raw": "A man with a red helmet on a small moped.",
                            "imgid": 0,
                            "sentid": 770337,
                        },
                        {
                            "tokens": ["man"],
                            "raw": "Man riding a motor bike on a dirt road. ",
                            "imgid": 0,
                            "sentid": 771687,
                        },
                    ],
                    "cocoid": 391895,
                },
                {
                    "filepath": "val2014",
                    "filename": "COCO_val2014_000000522418.jpg",
                    "split": "test",
                    "cocoid": 522418,
                    "sentences": [{"raw": "A woman wearing a net on her head cutting a cake."}],
                },
            ],
            "dataset": "coco",
        },
    )
    records = formats.read_karpathy(path, tmp_path / "images")
    assert records[0].split == "train" and records[0].source_split == "restval"
    assert records[0].image_id == "391895"
    assert records[0].path == tmp_path / "images" / "val2014" / "COCO_val2014_000000391895.jpg"
    assert records[0].captions[1] == "Man riding a motor bike on a dirt road."
    assert records[1].split == "test"


def test_karpathy_flickr_without_filepath_and_bad_split(tmp_path):
    entry = {"filename": "1000092795.jpg", "split": "val", "sentences": [{"raw": "Two young guys."}]}
    records = formats.read_karpathy(dump(tmp_path / "f.json", {"images": [entry]}), tmp_path / "imgs")
    assert records[0].path == tmp_path / "imgs" / "1000092795.jpg" and records[0].image_id == "1000092795"
    bad = dump(tmp_path / "bad.json", {"images": [entry | {"split": "holdout"}]})
    with pytest.raises(formats.FormatError, match=r"bad\.json: images\[0\]: field 'split' .*'holdout'"):
        formats.read_karpathy(bad, tmp_path)
    with pytest.raises(formats.FormatError, match=r"images\[0\]: missing field 'sentences'"):
        formats.read_karpathy(dump(tmp_path / "b2.json", {"images": [{"filename": "x.jpg", "split": "val"}]}), tmp_path)


def test_visual_genome_regions(tmp_path):
    path = dump(
        tmp_path / "region_descriptions.json",
        [
            {
                "regions": [
                    {
                        "region_id": 1382,
                        "width": 82,
                        "height": 139,
                        "image_id": 1,
                        "phrase": "the clock is green in colour",
                        "y": 57,
                        "x": 421,
                    },
                    {"region_id": 1383, "width": 10, "height": 10, "image_id": 1, "phrase": " ", "y": 0, "x": 0},
                ],
                "id": 1,
            },
            {"regions": [], "id": 2},
        ],
    )
    records = formats.read_vg_regions(path, tmp_path / "VG_100K")
    assert len(records) == 1  # image 2 has no phrases; blank phrases dropped
    assert records[0].captions == ["the clock is green in colour"] and records[0].path.name == "1.jpg"


def test_vqa_with_answer_confidence_and_test_without_annotations(tmp_path):
    questions = dump(
        tmp_path / "q.json",
        {
            "info": {},
            "task_type": "Open-Ended",
            "data_type": "mscoco",
            "license": {},
            "data_subtype": "val2014",
            "questions": [{"image_id": 262148, "question": "Where is he looking?", "question_id": 262148000}],
        },
    )
    answers = [
        {"answer": a, "answer_confidence": c, "answer_id": i + 1}
        for i, (a, c) in enumerate(
            [("down", "yes")] * 7 + [("at table", "maybe"), ("skateboard", "no"), ("table", "yes")]
        )
    ]
    annotations = dump(
        tmp_path / "a.json",
        {
            "annotations": [
                {
                    "question_type": "none of the above",
                    "multiple_choice_answer": "down",
                    "answers": answers,
                    "image_id": 262148,
                    "answer_type": "other",
                    "question_id": 262148000,
                }
            ]
        },
    )
    [record] = formats.read_vqa(questions, annotations)
    assert record.answers.count("down") == 7 and record.answer_type == "other"
    [unlabelled] = formats.read_vqa(questions, tmp_path / "missing_annotations.json")
    assert unlabelled.answers is None and unlabelled.question == "Where is he looking?"


def test_nlvr2_real_fields_directory_and_bad_label(tmp_path):
    line = {
        "validation": {"R6FMYL2Y": "True"},
        "sentence": "The right image shows a curving walkway.",
        "left_url": "http://x/l.jpg",
        "writer": "103",
        "label": "True",
        "right_url": "http://x/r.jpg",
        "synset": "n03891251",
        "query": "park bench5",
        "identifier": "train-10171-0-0",
        "extra_validations": {},
        "directory": 74,
    }
    path = tmp_path / "train.json"
    path.write_text(
        json.dumps(line) + "\n\n" + json.dumps(line | {"identifier": "train-10171-0-1", "label": "False"}) + "\n"
    )
    first, second = formats.read_nlvr2(path, tmp_path / "images")
    assert first.label is True and second.label is False
    assert first.left == tmp_path / "images" / "74" / "train-10171-0-img0.png"
    assert first.right.name == "train-10171-0-img1.png"
    path.write_text(json.dumps(line | {"label": "maybe"}) + "\n")
    with pytest.raises(
        formats.FormatError, match=r"train\.json: line 1: field 'label' must be True or False \(got 'maybe'\)"
    ):
        formats.read_nlvr2(path, tmp_path)
    path.write_text("{not json\n")
    with pytest.raises(formats.FormatError, match="line 1: not valid JSON"):
        formats.read_nlvr2(path, tmp_path)


def test_snli_ve_real_fields(tmp_path):
    row = {
        "gold_label": "contradiction",
        "sentence2": "The church is filled with song.",
        "Flikr30kID": "2248275918.jpg",
        "pairID": "2248275918.jpg#1r1c",
        "sentence1": "This church choir sings to the masses.",
        "captionID": "2248275918.jpg#1",
        "annotator_labels": ["contradiction"],
        "sentence1_binary_parse": "( ... )",
    }
    path = tmp_path / "snli_ve_dev.jsonl"
    path.write_text(
        json.dumps(row) + "\n" + json.dumps(row | {"Flikr30kID": "1000092795", "gold_label": "neutral"}) + "\n"
    )
    first, second = formats.read_snli_ve(path, tmp_path / "flickr")
    assert first.path == tmp_path / "flickr" / "2248275918.jpg" and first.label == "contradiction"
    assert second.path.name == "1000092795.jpg" and second.image_id == "1000092795"
    path.write_text(json.dumps(row | {"gold_label": "-"}) + "\n")
    with pytest.raises(formats.FormatError, match=r"line 1: field 'gold_label' must be one of"):
        formats.read_snli_ve(path, tmp_path)


def test_msrvtt_real_fields_and_container_lookup(tmp_path):
    data = {
        "info": {"year": "2016"},
        "videos": [
            {
                "category": 9,
                "url": "https://www.youtube.com/watch?v=9lZi22qLlEo",
                "video_id": "video0",
                "start time": 137.72,
                "end time": 149.44,
                "split": "train",
                "id": 0,
            },
            {
                "category": 16,
                "url": "u",
                "video_id": "video7010",
                "start time": 0,
                "end time": 10,
                "split": "test",
                "id": 7010,
            },
        ],
        "sentences": [
            {"caption": "a car is shown", "video_id": "video0", "sen_id": 0},
            {"caption": "a man drives", "video_id": "video0", "sen_id": 1},
        ],
    }
    path = dump(tmp_path / "MSRVTT_data.json", data)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "video7010.gif").write_bytes(b"GIF89a")
    first, second = formats.read_msrvtt(path, tmp_path / "videos")
    assert first.captions == ["a car is shown", "a man drives"] and first.path.name == "video0.mp4"
    assert second.path.name == "video7010.gif" and second.split == "test" and second.captions == []


def test_missing_file_is_named(tmp_path):
    with pytest.raises(formats.FormatError, match=r"nope\.json: file not found"):
        formats.read_msrvtt(tmp_path / "nope.json", tmp_path)
