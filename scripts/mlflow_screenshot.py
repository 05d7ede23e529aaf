"""Screenshot the MLflow UI for the README: the newest run of a stage in the local store.

Usage: python scripts/mlflow_screenshot.py [--stage pretrain] [--out docs/mlflow-run.png]
Needs Debian's chromium (scripts/bootstrap.sh --dev installs it) and a store with runs
(`dvc repro` writes them to mlflow.db).
"""

import argparse
import os
import sys
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the UI driver is test tooling, not library

from soho.tracking import DEFAULT_URI  # noqa: E402
from tests.support import mlflow_ui  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="pretrain")
    parser.add_argument("--experiment", default="soho-embedded")
    parser.add_argument("--out", type=Path, default=Path("docs/mlflow-run.png"))
    args = parser.parse_args()
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"error: no experiment {args.experiment!r} in {uri}: run `dvc repro` first")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.stage = '{args.stage}'", order_by=["start_time DESC"], max_results=1
    )
    if not runs:
        raise SystemExit(f"error: no {args.stage!r} run in {args.experiment!r}")
    with mlflow_ui.serve(uri) as base_url:
        mlflow_ui.render(mlflow_ui.run_page(base_url, experiment.experiment_id, runs[0].info.run_id), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
