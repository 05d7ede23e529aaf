"""DVC stage `evaluate@<task>`: metrics of every fine-tuned variant and of chance -> results/<task>.json.

The pre-trained variant's predictions go to ``results/submissions/<task>.json`` (VQA: the
official ``[{"question_id", "answer"}]`` format, one file per split key). The fine-tuned
SOHO model is logged with the MLflow PyTorch flavour (``mlflow.pytorch.load_model``).
"""

import json
import sys
from pathlib import Path

import soho
from soho import stage, tracking
from soho.data.atomic import write_text
from soho.tasks import TASKS, variants_for
from soho.tasks.run import evaluate, load_finetuned


def add_task(parser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS)


def main(params, args) -> None:
    """Evaluate each variant (and chance) on the task's evaluation splits."""
    results = Path(params.paths.results)
    report: dict[str, dict] = {}
    submissions: dict[str, list] = {}
    with tracking.stage_run("evaluate", params, args.task) as mlflow:
        for variant in ("chance", *variants_for(args.task, params.finetune.variants)):
            scores = evaluate(params, args.task, None if variant == "chance" else variant)
            for split, values in scores.items():
                predictions = values.pop("_predictions", None)
                if predictions is not None and variant == "pretrained":
                    submissions[split] = predictions
                mlflow.log_metrics({f"{variant}.{split}.{k}": v for k, v in values.items()})
            report[variant] = scores
        write_text(results / f"{args.task}.json", json.dumps(report, indent=1, sort_keys=True))
        tracking.log_artifact(mlflow, results / f"{args.task}.json")
        submission = results / "submissions" / f"{args.task}.json"
        write_text(submission, json.dumps(submissions if args.task != "vqa" else submissions.get("val2014", [])))
        tracking.log_artifact(mlflow, submission)
        if "pretrained" in params.finetune.variants:
            import mlflow.pytorch

            model = load_finetuned(params, args.task, "pretrained")
            mlflow.pytorch.log_model(  # pickle: predict() needs the module; code_paths ships soho/ with it
                model,
                name="model",
                serialization_format="pickle",
                code_paths=[str(Path(soho.__file__).parent)],
                pip_requirements=tracking.pinned_requirements(),  # inferring them costs ~9 s per stage
            )


if __name__ == "__main__":
    sys.exit(stage.run("evaluate", main, add_task))
