"""Score every fine-tuned variant of one task (and chance): ``results/<task>.json`` and its submission.

Why a module of its own: `finetune@<task>` scores right after training, in the same
process (imports and data readers load once), and ``stages/evaluate.py`` re-scores saved
checkpoints without training; both write the same files the same way. The pre-trained
variant's predictions go to ``results/submissions/<task>.json`` (VQA: the official
``[{"question_id", "answer"}]`` format), and the fine-tuned SOHO model is logged as an MLflow
pyfunc model of safetensors weights and JSON, loaded by the installed package (``soho.serving``).
"""

from __future__ import annotations

import json
from pathlib import Path

from soho import serving, tracking
from soho.config import Params
from soho.io import write_text
from soho.tasks import finetune_params, get
from soho.tasks.evaluation import CHANCE, evaluate
from soho.tasks.run import load_finetuned
from soho.train.distributed import DistContext


def score_task(params: Params, task: str, pipeline_id: str, ctx: DistContext = DistContext()) -> dict[str, dict]:
    """Evaluate each variant (and chance) on the task's evaluation splits; one MLflow run ``evaluate@<task>``.

    Under torchrun every rank calls it: the ranks share the scoring (:func:`evaluate`), rank 0
    writes the results, the submission and the MLflow run.
    """
    results = Path(params.paths.results)
    report: dict[str, dict] = {}
    submissions: dict[str, list] = {}
    trained = get(task).variants(finetune_params(params, task).variants)
    modules = {CHANCE: None} | {variant: load_finetuned(params, task, variant) for variant in trained}
    scored = evaluate(params, task, modules, ctx)
    if not ctx.is_main:
        return scored
    with tracking.stage_run("evaluate", params, task, pipeline_id=pipeline_id) as mlflow:
        for variant, scores in scored.items():
            for split, values in scores.items():
                predictions = values.pop("_predictions", None)
                if predictions is not None and variant == "pretrained":
                    submissions[split] = predictions
                mlflow.log_metrics(tracking.phase_metrics("eval", values, variant, split))
            report[variant] = scores
        write_text(results / f"{task}.json", json.dumps(report, indent=1, sort_keys=True))
        tracking.log_artifact(mlflow, results / f"{task}.json")
        submission = results / "submissions" / f"{task}.json"
        write_text(submission, json.dumps(get(task).submission(submissions)))
        tracking.log_artifact(mlflow, submission)
        if "pretrained" in modules:
            serving.log_model(modules["pretrained"].cpu(), params, name="model")  # the served model runs on the CPU
    return report
