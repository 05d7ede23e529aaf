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


# Issue 15: every field a reader uses is checked (presence, type, allowed values), and every
# path taken from a data file stays inside its data set's folder.


def karpathy(tmp_path, **fields):
    entry = {"filepath": "val2014", "filename": "a.jpg", "split": "val", "cocoid": 7, "sentences": [{"raw": "A cat."}]}
    entry = {k: v for k, v in (entry | fields).items() if v is not ...}
    return lambda: formats.read_karpathy(dump(tmp_path / "k.json", {"images": [entry]}), tmp_path / "coco")


def vg(tmp_path, **fields):
    entry = {k: v for k, v in ({"id": 1, "regions": [{"phrase": "a clock"}]} | fields).items() if v is not ...}
    return lambda: formats.read_vg_regions(dump(tmp_path / "r.json", [entry]), tmp_path / "VG_100K")


def vqa(tmp_path, question=None, annotation=None, extra=()):
    q = {"image_id": 1, "question": "What?", "question_id": 10} | (question or {})
    a = {
        "question_id": 10,
        "answers": [{"answer": "yes"}] * 10,
        "answer_type": "yes/no",
        "question_type": "is",
        "multiple_choice_answer": "yes",
    } | (annotation or {})
    q, a = ({k: v for k, v in d.items() if v is not ...} for d in (q, a))
    questions = dump(tmp_path / "q.json", {"questions": [q, *extra]})
    return lambda: formats.read_vqa(questions, dump(tmp_path / "a.json", {"annotations": [a]}))


def jsonl(path, row):
    path.write_text(json.dumps({k: v for k, v in row.items() if v is not ...}) + "\n")
    return path


def nlvr2(tmp_path, **fields):
    row = {"identifier": "dev-1-0-0", "sentence": "Two dogs.", "label": "True", "directory": 3} | fields
    return lambda: formats.read_nlvr2(jsonl(tmp_path / "dev.json", row), tmp_path / "images")


def snli_ve(tmp_path, **fields):
    row = {"gold_label": "neutral", "Flikr30kID": "1.jpg", "sentence2": "A man.", "pairID": "1.jpg#0"} | fields
    return lambda: formats.read_snli_ve(jsonl(tmp_path / "s.jsonl", row), tmp_path / "flickr")


def msrvtt(tmp_path, video=None, sentence=None):
    v = {k: x for k, x in ({"video_id": "video1", "split": "train"} | (video or {})).items() if x is not ...}
    s = {k: x for k, x in ({"video_id": "video1", "caption": "a car"} | (sentence or {})).items() if x is not ...}
    path = dump(tmp_path / "MSRVTT_data.json", {"videos": [v], "sentences": [s]})
    return lambda: formats.read_msrvtt(path, tmp_path / "videos")


BAD_RECORDS = {
    # Karpathy
    "karpathy/filename-missing": (lambda t: karpathy(t, filename=...), r"images\[0\]: missing field 'filename'"),
    "karpathy/filename-number": (lambda t: karpathy(t, filename=5), r"field 'filename' must be a non-empty string"),
    "karpathy/filepath-list": (lambda t: karpathy(t, filepath=["a"]), r"field 'filepath' must be a string"),
    "karpathy/split-list": (lambda t: karpathy(t, split=["val"]), r"field 'split' must be one of"),
    "karpathy/sentences-string": (lambda t: karpathy(t, sentences="A cat."), r"field 'sentences' must be a list"),
    "karpathy/sentence-string": (lambda t: karpathy(t, sentences=["A cat."]), r"sentences\[0\]: expected an object"),
    "karpathy/raw-number": (lambda t: karpathy(t, sentences=[{"raw": 3}]), r"field 'raw' must be a string"),
    "karpathy/cocoid-list": (lambda t: karpathy(t, cocoid=[7]), r"field 'cocoid' must be an integer or a string"),
    "karpathy/entry-string": (
        lambda t: lambda: formats.read_karpathy(dump(t / "k.json", {"images": ["a.jpg"]}), t),
        r"k\.json: images\[0\]: expected an object",
    ),
    # Visual Genome
    "vg/id-missing": (lambda t: vg(t, id=...), r"\[0\]: missing field 'id'"),
    "vg/id-float": (lambda t: vg(t, id=1.5), r"field 'id' must be an integer or a string"),
    "vg/regions-missing": (lambda t: vg(t, regions=...), r"missing field 'regions'"),
    "vg/phrase-number": (lambda t: vg(t, regions=[{"phrase": 1}]), r"regions\[0\]: field 'phrase' must be a string"),
    # VQA
    "vqa/nine-answers": (
        lambda t: vqa(t, annotation={"answers": [{"answer": "yes"}] * 9}),
        r"a\.json: annotations\[0\]: field 'answers' must hold 10 answers \(got 9\)",
    ),
    "vqa/zero-answers": (
        lambda t: vqa(t, annotation={"answers": []}),
        r"field 'answers' must hold 10 answers \(got 0\)",
    ),
    "vqa/answers-missing": (
        lambda t: vqa(t, annotation={"answers": ...}),
        r"annotations\[0\]: missing field 'answers'",
    ),
    "vqa/answers-string": (lambda t: vqa(t, annotation={"answers": "yes"}), r"field 'answers' must be a list"),
    "vqa/answer-number": (
        lambda t: vqa(t, annotation={"answers": [{"answer": 1}] * 10}),
        r"answers\[0\]: field 'answer' must be a string",
    ),
    "vqa/answer-type": (
        lambda t: vqa(t, annotation={"answer_type": "colour"}),
        r"field 'answer_type' must be one of \['number', 'other', 'yes/no'\] \(got 'colour'\)",
    ),
    "vqa/answer-type-missing": (lambda t: vqa(t, annotation={"answer_type": ...}), r"missing field 'answer_type'"),
    "vqa/question-type-number": (lambda t: vqa(t, annotation={"question_type": 3}), r"'question_type' must be a str"),
    "vqa/mc-answer-missing": (
        lambda t: vqa(t, annotation={"multiple_choice_answer": ...}),
        r"missing field 'multiple_choice_answer'",
    ),
    "vqa/question-id-string": (
        lambda t: vqa(t, question={"question_id": "ten"}),
        r"q\.json: questions\[0\]: field 'question_id' must be an integer \(got 'ten'\)",
    ),
    "vqa/annotation-id-missing": (lambda t: vqa(t, annotation={"question_id": ...}), r"missing field 'question_id'"),
    "vqa/image-id-bool": (lambda t: vqa(t, question={"image_id": True}), r"field 'image_id' must be an integer"),
    "vqa/question-missing": (lambda t: vqa(t, question={"question": ...}), r"missing field 'question'"),
    "vqa/question-number": (lambda t: vqa(t, question={"question": 4}), r"field 'question' must be a string"),
    "vqa/question-id-repeats": (
        lambda t: vqa(t, extra=[{"image_id": 1, "question": "Why?", "question_id": 10}]),
        r"questions\[1\]: question_id 10 repeats",
    ),
    # NLVR2
    "nlvr2/sentence-missing": (lambda t: nlvr2(t, sentence=...), r"dev\.json: line 1: missing field 'sentence'"),
    "nlvr2/sentence-number": (lambda t: nlvr2(t, sentence=2), r"field 'sentence' must be a string"),
    "nlvr2/identifier-number": (lambda t: nlvr2(t, identifier=5), r"field 'identifier' must be"),
    "nlvr2/identifier-without-sentence": (lambda t: nlvr2(t, identifier="dev1"), r"field 'identifier' must be"),
    "nlvr2/directory-list": (lambda t: nlvr2(t, directory=[1]), r"field 'directory' must be an integer or a string"),
    # SNLI-VE
    "snli_ve/hypothesis-number": (lambda t: snli_ve(t, sentence2=1), r"line 1: field 'sentence2' must be a string"),
    "snli_ve/image-list": (lambda t: snli_ve(t, Flikr30kID=["1.jpg"]), r"field 'Flikr30kID' must be a non-empty"),
    "snli_ve/label-list": (lambda t: snli_ve(t, gold_label=["neutral"]), r"field 'gold_label' must be one of"),
    "snli_ve/pair-list": (lambda t: snli_ve(t, pairID=[1]), r"field 'pairID' must be an integer or a string"),
    # MSR-VTT
    "msrvtt/split": (lambda t: msrvtt(t, video={"split": "val"}), r"videos\[0\]: field 'split' must be one of"),
    "msrvtt/video-id-number": (lambda t: msrvtt(t, video={"video_id": 1}), r"field 'video_id' must be a non-empty"),
    "msrvtt/caption-number": (lambda t: msrvtt(t, sentence={"caption": 1}), r"sentences\[0\]: field 'caption' must"),
    "msrvtt/caption-missing": (lambda t: msrvtt(t, sentence={"caption": ...}), r"missing field 'caption'"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_every_field_a_reader_uses_is_checked(tmp_path, case):
    make, expected = BAD_RECORDS[case]
    with pytest.raises(formats.FormatError, match=expected) as err:
        make(tmp_path)()
    assert "\n" not in str(err.value)


ESCAPES = {
    "karpathy/filename": (lambda t: karpathy(t, filename="../../flickr30k/flickr30k-images/1.jpg"), "filename"),
    "karpathy/filepath": (lambda t: karpathy(t, filepath="../flickr30k"), "filepath"),
    "karpathy/absolute": (lambda t: karpathy(t, filepath=..., filename="/etc/passwd"), "filename"),
    "vg/id": (lambda t: vg(t, id="../../coco/train2014/x"), "id"),
    "nlvr2/directory": (lambda t: nlvr2(t, directory="../../../coco"), "directory"),
    "nlvr2/identifier": (lambda t: nlvr2(t, identifier="../../x-0"), "identifier"),
    "snli_ve/image": (lambda t: snli_ve(t, Flikr30kID="../../coco/x.jpg"), "Flikr30kID"),
    "msrvtt/video": (lambda t: msrvtt(t, video={"video_id": "../../x"}, sentence={"video_id": "../../x"}), "video_id"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_paths_from_data_files_stay_in_their_folder(tmp_path, case):
    make, field = ESCAPES[case]
    with pytest.raises(formats.FormatError, match=rf"field '{field}' leads outside {tmp_path}/\w+") as err:
        make(tmp_path)()
    assert "\n" not in str(err.value)


def test_the_checked_readers_still_read_good_records(tmp_path):
    [image] = karpathy(tmp_path)()
    assert image.path == tmp_path / "coco" / "val2014" / "a.jpg" and image.image_id == "7"
    assert karpathy(tmp_path, filename="sub/../b.jpg")()[0].path.name == "b.jpg"  # stays inside
    assert vg(tmp_path)()[0].path == tmp_path / "VG_100K" / "1.jpg"
    [question] = vqa(tmp_path)()
    assert question.answers == ["yes"] * 10 and question.answer_type == "yes/no"
    assert nlvr2(tmp_path)()[0].left == tmp_path / "images" / "3" / "dev-1-0-img0.png"
    assert snli_ve(tmp_path)()[0].path == tmp_path / "flickr" / "1.jpg"
    assert msrvtt(tmp_path)()[0].captions == ["a car"]


def test_visual_genome_images_come_from_both_archives_folders(tmp_path):
    """images.zip unpacks to VG_100K/, images2.zip to VG_100K_2/ (issue 16 g): both are read."""
    path = tmp_path / "region_descriptions.json"
    phrase = {"region_id": 1, "width": 5, "height": 5, "image_id": 0, "phrase": "a red ball", "x": 0, "y": 0}
    path.write_text(json.dumps([{"regions": [phrase | {"image_id": i}], "id": i} for i in (1, 2, 3)]))
    folders = [tmp_path / "VG_100K", tmp_path / "VG_100K_2"]
    for folder, image in zip(folders, (1, 2), strict=True):
        folder.mkdir()
        (folder / f"{image}.jpg").write_bytes(b"jpeg")
    paths = [record.path for record in formats.read_vg_regions(path, folders)]
    assert paths == [folders[0] / "1.jpg", folders[1] / "2.jpg", folders[0] / "3.jpg"]  # 3: missing, counted bad later


def msrvtt_archive(root, videos: int = 6) -> None:
    """Frozen-in-Time's MSRVTT.zip as it unpacks, at fixture size: MSRVTT/{annotation,videos/all,high-quality/...}."""
    import pickle

    archive = root / "msrvtt" / "MSRVTT"
    (archive / "videos" / "all").mkdir(parents=True)
    for i in range(videos):
        (archive / "videos" / "all" / f"video{i}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    annotations = [
        {"image_id": f"video{i}", "caption": f"clip {i} caption {c}", "id": 2 * i + c}
        for c in (0, 1)
        for i in range(videos)
    ]
    (archive / "annotation").mkdir()
    (archive / "annotation" / "MSR_VTT.json").write_text(json.dumps({"annotations": annotations}))
    lists = archive / "high-quality" / "structured-symlinks"
    lists.mkdir(parents=True)
    for name, ids in {
        "train_list_full.txt": [0, 1, 2],
        "val_list_full.txt": [3],
        "test_list_full.txt": [4, 5],
        "train_list_jsfusion.txt": [0, 1, 2, 3],
        "val_list_jsfusion.txt": [4, 5],
    }.items():
        (lists / name).write_text("\n".join(f"video{i}" for i in ids))  # the real files end without a newline
    (lists / "jsfusion_val_caption_idx.pkl").write_bytes(pickle.dumps({"video4": 1, "video5": 0}))


def test_msrvtt_from_the_public_archive_has_the_official_and_the_1k_a_splits(tmp_path):
    """Issue 16 (h): MSRVTT.zip unpacks to MSRVTT/videos/all/*.mp4, annotation/MSR_VTT.json and split lists."""
    from soho.data import catalog

    msrvtt_archive(tmp_path)
    splits = catalog.msrvtt(tmp_path)
    assert {s: [x.key for x in samples] for s, samples in splits.items()} == {
        "train": ["video0", "video1", "video2"],
        "validate": ["video3"],
        "test": ["video4", "video5"],
        "train_9k": ["video0", "video1", "video2", "video3"],
        "test_1k": ["video4", "video5"],
    }
    assert splits["test"][0].meta["captions"] == ["clip 4 caption 0", "clip 4 caption 1"]
    assert [s.meta["captions"] for s in splits["test_1k"]] == [
        ["clip 4 caption 1"],
        ["clip 5 caption 0"],
    ]  # the pkl's pick
    assert splits["train"][0].media == {"mp4": tmp_path / "msrvtt" / "MSRVTT" / "videos" / "all" / "video0.mp4"}


def test_a_bad_1k_a_caption_index_or_a_pickle_with_code_is_refused_naming_the_file(tmp_path):
    import pathlib
    import pickle

    from soho.data import catalog

    msrvtt_archive(tmp_path)
    pkl = tmp_path / "msrvtt" / "MSRVTT" / "high-quality" / "structured-symlinks" / "jsfusion_val_caption_idx.pkl"
    pkl.write_bytes(pickle.dumps({"video4": 7, "video5": 0}))
    with pytest.raises(
        formats.FormatError, match=r"jsfusion_val_caption_idx\.pkl: caption 7 of 'video4', which has 2 in"
    ):
        catalog.msrvtt(tmp_path)
    pkl.write_bytes(pickle.dumps({"video4": pathlib.PurePosixPath("x")}))
    with pytest.raises(formats.FormatError, match=r"\.pkl: refusing to unpickle pathlib\.\w*Path: only plain data"):
        catalog.msrvtt(tmp_path)
    whole = pickle.dumps({"video4": 1, "video5": 0}, protocol=4)
    damaged = {
        "truncated": whole[: len(whole) // 2],
        "an item set on an int": b"\x80\x04K\x01K\x02K\x03s.",  # SETITEM: a TypeError, not an UnpicklingError
        "an unregistered extension": b"\x80\x02\x82\x01.",  # EXT1: a ValueError
        "not a pickle": b"hello world",
    }
    for data in damaged.values():
        pkl.write_bytes(data)
        with pytest.raises(formats.FormatError, match=r"jsfusion_val_caption_idx\.pkl: not a readable pickle"):
            catalog.msrvtt(tmp_path)


def test_vg_images_that_are_coco_val_or_test_images_leave_pre_training_and_are_counted(tmp_path):
    """About half of VG is COCO (issue 16 m): a Karpathy val/test image must not be pre-trained on; restval stays."""
    from PIL import Image

    from soho.data import catalog, shards

    (tmp_path / "coco" / "val2014").mkdir(parents=True)
    karpathy = [
        {
            "filepath": "val2014",
            "filename": f"{cocoid}.jpg",
            "cocoid": cocoid,
            "split": split,
            "sentences": [{"raw": "a"}],
        }
        for cocoid, split in ((10, "test"), (11, "val"), (12, "restval"), (13, "train"))
    ]
    (tmp_path / "coco" / "dataset_coco.json").write_text(json.dumps({"images": karpathy}))
    vg = tmp_path / "vg"
    (vg / "VG_100K").mkdir(parents=True)
    coco_of = {1: 10, 2: 11, 3: 12, 4: None, 5: 99}  # 99: a COCO image outside the Karpathy file
    phrase = {"region_id": 1, "width": 5, "height": 5, "phrase": "a red ball", "x": 0, "y": 0}
    (vg / "region_descriptions.json").write_text(
        json.dumps([{"id": i, "regions": [phrase | {"image_id": i}]} for i in coco_of])
    )
    for i in coco_of:
        Image.new("RGB", (8, 8), "red").save(vg / "VG_100K" / f"{i}.jpg")
    with pytest.raises(formats.FormatError, match=r"vg/image_data\.json: missing; it maps VG images to COCO ids"):
        catalog.vg(tmp_path)
    (vg / "image_data.json").write_text(json.dumps([{"image_id": i, "coco_id": c} for i, c in coco_of.items()]))
    splits = catalog.vg(tmp_path)
    assert {split: [s.key for s in samples] for split, samples in splits.items()} == {
        "coco_eval": ["1", "2"],
        "train": ["3", "4", "5"],
    }
    stats = shards.write_all(["vg"], tmp_path, tmp_path / "shards", 100, 0.0)
    assert stats["datasets"]["vg"]["coco_eval"]["samples"] == 2  # the DVC metric of what left pre-training
    assert stats["datasets"]["vg"]["train"]["samples"] == 3


def test_vg_image_data_needs_a_coco_id_field_per_image(tmp_path):
    path = tmp_path / "image_data.json"
    path.write_text(json.dumps([{"image_id": 1, "coco_id": 5}, {"image_id": 2}]))
    with pytest.raises(formats.FormatError, match=r"image_data\.json.*missing field 'coco_id'"):
        formats.read_vg_coco_ids(path)
    path.write_text(json.dumps([{"id": 1, "coco_id": 5}, {"id": 2, "coco_id": None}]))  # v1.0's "id"
    assert formats.read_vg_coco_ids(path) == {"1": "5"}
