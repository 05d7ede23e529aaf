"""EvalAI's score of a VQA v2 submission back into the pipeline: read, checked, merged, banded."""

import hashlib
import json

import pytest

from soho import report, validate
from soho.eval import evalai

from ..conftest import REPO

TEST_DEV = {"test-dev": {"yes/no": 88.9, "number": 55.1, "other": "63.2", "overall": 73.1}}


def write(path, document):
    path.write_text(json.dumps(document))
    return path


def test_the_result_list_and_its_wrapped_form_read_as_our_splits_and_metric_names(tmp_path):
    expected = {"test-dev2015": {"yes_no": 88.9, "number": 55.1, "other": 63.2, "overall": 73.1}}
    assert evalai.read_result(write(tmp_path / "a.json", [TEST_DEV])) == expected
    wrapped = {"result": [TEST_DEV, {"test-standard": {"overall": 73.4, "others": 63.0}}]}
    both = evalai.read_result(write(tmp_path / "b.json", wrapped))
    assert both["test-dev2015"] == expected["test-dev2015"] and both["test2015"] == {"overall": 73.4, "other": 63.0}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"test-dev": [1]}, r"expected EvalAI's result list"),
        ([{"val2014": {"overall": 70.0}}], r"result\[0\]: split 'val2014' is not a VQA v2 test split"),
        ([{"test-dev": {"overall": 70.0, "accuracy": 1}}], r"result\[0\]\.test-dev: unknown label\(s\) \['accuracy'\]"),
        ([{"test-dev": {"yes/no": 80.0}}], r"result\[0\]\.test-dev: no 'overall'"),
        ([{"test-dev": {"overall": 173.1}}], r"result\[0\]\.test-dev\.overall: 173\.1 is not a percentage"),
        ([{"test-dev": {"overall": "n/a"}}], r"result\[0\]\.test-dev\.overall: 'n/a' is not a percentage"),
        ([TEST_DEV, TEST_DEV], r"result\[1\]: split 'test-dev' given twice"),
        ([{"test-dev": {}, "test-standard": {}}], r"result\[0\]: expected one"),
        ([{"test-dev": {"overall": 70.0, "other": 1, "others": 2}}], r"both 'other' and 'others'"),
    ],
)
def test_a_result_that_is_not_evalais_is_an_error_naming_the_file_and_the_field(tmp_path, document, message):
    path = write(tmp_path / "result.json", document)
    with pytest.raises(evalai.ServerScoreError, match=message) as caught:
        evalai.read_result(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_import_merges_into_the_server_scores_and_records_where_each_came_from(tmp_path):
    server = tmp_path / "server_scores"
    first = write(tmp_path / "first.json", [TEST_DEV])
    evalai.import_result(first, server, "pretrained")
    evalai.import_result(write(tmp_path / "scl.json", [{"test-dev": {"overall": 74.0}}]), server, "pretrained_scl")
    newer = write(tmp_path / "newer.json", [{"test-dev": {"overall": 73.3}}, {"test-standard": {"overall": 73.5}}])
    evalai.import_result(newer, server, "pretrained", only="test-dev2015")
    held = json.loads((server / "vqa.json").read_text())
    assert held == {
        "pretrained": {"test-dev2015": {"overall": 73.3}},
        "pretrained_scl": {"test-dev2015": {"overall": 74.0}},
    }
    sources = json.loads((server / "provenance" / "vqa.json").read_text())
    assert sources["pretrained/test-dev2015"]["file"] == "newer.json"
    assert sources["pretrained/test-dev2015"]["sha256"] == hashlib.sha256(newer.read_bytes()).hexdigest()
    with pytest.raises(evalai.ServerScoreError, match=r"--variant 'soho': not a fine-tuned variant"):
        evalai.import_result(first, server, "soho")
    assert evalai.main([str(tmp_path / "missing.json"), "--server-dir", str(server)]) == 2
    assert json.loads((server / "vqa.json").read_text()) == held  # a failed import changes nothing


def test_server_scores_join_the_results_and_become_the_paper_bands_they_wait_for(tmp_path):
    results, server = tmp_path / "results", tmp_path / "server_scores"
    results.mkdir()
    local = {"pretrained": {"val2014": {"overall": 60.0}, "test-dev2015": {"questions": 107394}}}
    write(results / "vqa.json", local)
    alone = report.load_results(results, server)  # no server scores yet (the folder need not exist)
    key = "vqa/pretrained/test-dev2015/overall"
    bands, waiting = validate.server_bands(REPO / "reference", "paper", alone)
    assert bands == [] and "EvalAI" in waiting[key]
    evalai.import_result(write(tmp_path / "r.json", [TEST_DEV]), server)
    merged = report.load_results(results, server)
    assert report.lookup(merged, key) == 73.1 and report.lookup(merged, "vqa/pretrained/val2014/overall") == 60.0
    assert report.lookup(merged, "vqa/pretrained/test-dev2015/questions") == 107394  # the submission's count stays
    bands, waiting = validate.server_bands(REPO / "reference", "paper", merged)
    assert waiting == {} and [(b.key, b.low, b.high) for b in bands] == [(key, 73.25 - 3.0, 73.25 + 3.0)]
    assert [c.ok for c in validate.check(merged, bands)] == [True]
    assert validate.server_bands(REPO / "reference", "embedded", merged) == ([], {})
    write(results / "vqa.json", {"pretrained": {"test-dev2015": {"overall": 1.0}}})
    with pytest.raises(
        ValueError, match=r"pretrained/test-dev2015/overall is also in .*results/vqa\.json: one metric, one source"
    ):
        report.load_results(results, server)


def test_a_score_whose_submission_changed_since_the_import_is_named_stale(tmp_path):
    server, submission = tmp_path / "server_scores", tmp_path / "vqa.json"
    submission.write_text('[{"question_id": 1, "answer": "yes"}]')
    result = write(tmp_path / "r.json", [TEST_DEV])
    with pytest.raises(evalai.ServerScoreError, match=r"--submission .*gone\.json: not found"):
        evalai.import_result(result, server, submission=tmp_path / "gone.json")
    evalai.import_result(result, server, submission=submission)
    assert evalai.stale(server) == []
    submission.write_text('[{"question_id": 1, "answer": "no"}]')  # finetune@vqa ran again
    (line,) = evalai.stale(server)
    assert "pretrained/test-dev2015 scores an earlier" in line and str(submission) in line
    evalai.import_result(result, server, submission=submission)  # the new file's score
    assert evalai.stale(server) == []
