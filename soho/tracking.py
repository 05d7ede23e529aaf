"""MLflow tracking: one run per stage execution, tagged so runs of one pipeline group together.

Tracking URI from ``MLFLOW_TRACKING_URI`` (default: a SQLite file ``mlflow.db`` in the
working directory, git-ignored); one experiment per profile (``soho-embedded``,
``soho-paper``). Tags: stage, task, profile, git commit, and ``pipeline_id``, which the
caller passes (``soho.stage`` reads it once per stage execution; without one given, it is
:func:`derived_pipeline_id`, from the commit and the parameters).

Why the id is an argument: read from ``os.environ`` deep inside, it made stages set the
environment to group their runs (ablate did), and the tag said nothing about who chose it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from soho import tracking_store
from soho.config import Params, flatten
from soho.tracking_buffer import BufferedRun

log = logging.getLogger(__name__)
DEFAULT_URI = tracking_store.DEFAULT_URI
# The first part of every MLflow metric key (README, "Metric keys"): where in a stage the value comes from.
PHASES = ("train", "final", "heldout", "eval", "download", "weights", "shard", "validate")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def derived_pipeline_id(params: Params) -> str:
    """The id of a pipeline nobody named: 12 hex digits of the parameters and the commit."""
    blob = json.dumps(params.model_dump(mode="json"), sort_keys=True) + git_commit()
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@contextlib.contextmanager
def stage_run(
    stage: str, params: Params, task: str | None = None, run_name: str | None = None, *, pipeline_id: str
) -> Iterator[BufferedRun]:
    """Start an MLflow run for one stage execution, tagged ``pipeline_id``; yields it as a :class:`BufferedRun`.

    The run is FINISHED when the block ends, FAILED when it raises. A lost store never
    blocks the block: metrics and tags are queued (:mod:`soho.tracking_buffer`); the store
    being unreachable or unwritable is a :class:`~soho.tracking_store.TrackingError`.
    Runs of the same stage and task left RUNNING by a dead process are marked FAILED first.
    """
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    experiment_id = tracking_store.open_store(f"soho-{params.profile}")
    uri = tracking_store.tracking_uri()
    name = run_name or (f"{stage}@{task}" if task else stage)
    tags = {"stage": stage, "profile": params.profile, "git_commit": git_commit(), "pipeline_id": pipeline_id}
    if task:
        tags["task"] = task
    with tracking_store.store_errors(uri, f"starting run {name}"):
        tracking_store.fail_orphaned_runs(experiment_id, stage, task)
        active = mlflow.start_run(run_name=name, tags=tags | tracking_store.process_tags())
    run = BufferedRun(mlflow, active.info.run_id, uri)
    try:
        with tracking_store.store_errors(uri, f"logging to run {name}"):
            _log_params(run, params)
            yield run
    except BaseException:
        try:
            run.close("FAILED")
        except Exception as closing:  # the stage's own error is the one to report
            log.warning("%s", closing)
        raise
    run.close("FINISHED")


def _log_params(run: BufferedRun, params: Params) -> None:
    """Every parameter, flattened, in MLflow-sized batches (lists and mappings as JSON)."""
    from mlflow.entities import Param

    flat = [Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in flatten(params).items()]
    for start in range(0, len(flat), 100):
        run.client.log_batch(run.run_id, params=flat[start : start + 100])


def metric_key(phase: str, *names: str) -> str:
    """The one shape of an MLflow metric key: ``<phase>/<name>[/<name>...]``, e.g. ``eval/pretrained/test/accuracy``.

    Why: MLflow's UI groups charts by the part before the first ``/``, and one shape lets a
    query name a metric without knowing which stage logged it (README, "Metric keys").
    """
    if phase not in PHASES:
        raise ValueError(f"metric phase {phase!r} is not one of {list(PHASES)}")
    for name in names:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"metric name part {name!r} (phase {phase}) must be a non-empty string without '/'")
    return "/".join((phase, *names))


def phase_metrics(phase: str, values: Mapping[str, Any], *prefix: str) -> dict[str, float]:
    """Every number in ``values``, nested mappings too, keyed ``<phase>/<path>``; other values are left out.

    ``phase_metrics("shard", {"coco": {"train": {"samples": 12}}})`` -> ``{"shard/coco/train/samples": 12}``.
    """
    found: dict[str, float] = {}
    for name, value in values.items():
        if isinstance(value, Mapping):
            found |= phase_metrics(phase, value, *prefix, str(name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[metric_key(phase, *prefix, str(name))] = value
    return found


def results_metrics(values: Mapping[str, float]) -> dict[str, float]:
    """A results file's flat ``<phase>_<name>`` keys as MLflow keys: ``heldout_mlm_acc`` -> ``heldout/mlm_acc``.

    The file keeps its own keys (a DVC metric); only the MLflow names follow the convention.
    """
    found: dict[str, float] = {}
    for key, value in values.items():
        phase, _, name = key.partition("_")
        if phase not in PHASES or not name:
            raise ValueError(f"results key {key!r} does not start with a phase ({', '.join(PHASES)}) and '_'")
        found[metric_key(phase, name)] = value
    return found


def step_logger(mlflow) -> Callable[[int, dict], None]:
    """The training loop's ``on_log`` callback: per-step metrics into the stage's run, as ``train/<name>``.

    ``mlflow`` is what :func:`stage_run` yields: the metrics are queued and sent by its thread,
    so a slow or lost tracking server never blocks a training step.
    """

    def on_log(step: int, metrics: dict) -> None:
        mlflow.log_metrics({metric_key("train", name): value for name, value in metrics.items()}, step=step)

    return on_log


def pinned_requirements(
    packages: tuple[str, ...] = ("torch", "torchvision", "transformers", "safetensors"),
) -> list[str]:
    """``name==version`` of the installed packages a logged model needs (from package metadata)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in packages]


def log_artifact(mlflow, path: Path, artifact_path: str | None = None) -> None:
    if Path(path).exists():
        mlflow.log_artifact(str(path), artifact_path)
