"""One shape for MLflow metric keys, ``<phase>/<name>[/<name>...]`` (README, "Metric keys")."""

import json

import pytest

from soho import tracking

from ..conftest import REPO


def test_metric_key_joins_a_known_phase_and_names_with_slashes():
    assert tracking.metric_key("train", "loss") == "train/loss"
    assert tracking.metric_key("eval", "pretrained", "test", "accuracy") == "eval/pretrained/test/accuracy"
    with pytest.raises(ValueError, match="'training' is not one of"):
        tracking.metric_key("training", "loss")
    for bad in ("", "a/b", 3):
        with pytest.raises(ValueError, match="non-empty string without '/'"):
            tracking.metric_key("final", bad)


def test_phase_metrics_keys_every_number_by_its_path_and_leaves_the_rest_out():
    values = {"datasets": {"coco": {"train": {"samples": 12, "bad_fraction": 0.0}}}, "total": {"bad": 0}}
    assert tracking.phase_metrics("shard", values | {"note": "text", "ok": True}) == {
        "shard/datasets/coco/train/samples": 12,
        "shard/datasets/coco/train/bad_fraction": 0.0,
        "shard/total/bad": 0,
    }


@pytest.mark.parametrize("name", ["pretrain", "pretrain_scl"])
def test_results_metrics_turn_the_committed_pretraining_keys_into_phase_keys(name):
    committed = json.loads((REPO / "results" / f"{name}.json").read_text())
    keys = tracking.results_metrics(committed)
    assert len(keys) == len(committed)
    assert keys["heldout/itm_acc"] == committed["heldout_itm_acc"] and keys["final/loss"] == committed["final_loss"]
    assert {key.split("/")[0] for key in keys} == {"final", "heldout"}
    with pytest.raises(ValueError, match="'throughput' does not start with a phase"):
        tracking.results_metrics({"throughput": 1.0})


def test_step_logger_logs_each_training_step_under_train():
    logged = []

    class Recorder:
        def log_metrics(self, metrics, step):
            logged.append((step, metrics))

    tracking.step_logger(Recorder())(5, {"loss": 2.5, "lr": 1e-4})
    assert logged == [(5, {"train/loss": 2.5, "train/lr": 1e-4})]
