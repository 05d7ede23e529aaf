"""The stage kit: what every DVC stage entry point shares.

Why: the stages differed for no reason. Some opened an MLflow run and some did not, each
set up torchrun itself, and the pipeline id went through ``os.environ``. :func:`run` does
all of it once for every stage, in this order: arguments (``--params``, ``--profile``,
``--pipeline-id``), logging, the parameters (the profile is resolved in one place,
:func:`soho.config.load_params`), distributed init, the pipeline id, and a rank-0 MLflow
run tagged with the stage. It hands the body ``args.kit`` (:class:`Kit`). A stage whose
body opens several runs itself (one per variant or ablation row) passes ``own_runs=True``
and gets no run. A stage that fails on bad input prints one clear line naming the file,
field or value and exits 2, instead of a traceback through library code.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soho import os_errors, tracking, tracking_store
from soho.config import PROFILES, ConfigError, Params, load_params
from soho.data.download import DownloadError
from soho.data.formats import FormatError
from soho.data.shards import ShardError
from soho.tracking_store import TrackingError
from soho.train.checkpoint import CheckpointError
from soho.train.distributed import DistContext, init_from_env

USER_ERRORS: tuple[type[Exception], ...] = (
    CheckpointError,
    ConfigError,
    DownloadError,
    FormatError,
    ShardError,
    TrackingError,
)
PIPELINE_ENV = "SOHO_PIPELINE_ID"  # set once per `dvc repro` by scripts/pipeline.sh and scripts/test.sh


@dataclass(frozen=True)
class Kit:
    """What :func:`run` hands a stage body as ``args.kit``.

    ``mlflow`` is the ``mlflow`` module inside the stage's run on rank 0; ``None`` on other
    ranks and for ``own_runs`` stages, where the ``log_*`` helpers do nothing.
    """

    stage: str
    pipeline_id: str
    ctx: DistContext
    mlflow: Any = None

    def log_metrics(self, phase: str, values: Mapping[str, Any]) -> None:
        """Numbers in ``values`` (nested too) as ``<phase>/<name>`` metrics (:func:`tracking.phase_metrics`)."""
        if self.mlflow is not None:
            self.mlflow.log_metrics(tracking.phase_metrics(phase, values))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.mlflow is not None:
            self.mlflow.set_tags(dict(tags))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.mlflow is not None:
            tracking.log_artifact(self.mlflow, path, artifact_path)


def parser(stage: str, body: Callable, configure: Callable | None = None) -> argparse.ArgumentParser:
    """The arguments every stage takes, plus the stage's own (``configure``)."""
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py", description=body.__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    parser.add_argument(
        "--profile", choices=PROFILES, help="override the profile in the file (must agree with SOHO_PROFILE if set)"
    )
    parser.add_argument(
        "--pipeline-id",
        help=f"MLflow tag grouping the runs of one pipeline (default: ${PIPELINE_ENV}, else commit + params hash)",
    )
    if configure is not None:
        configure(parser)
    return parser


def resolve_pipeline_id(given: str | None, params: Params) -> str:
    """``--pipeline-id``, else ``$SOHO_PIPELINE_ID``, else :func:`tracking.derived_pipeline_id`."""
    return given or os.environ.get(PIPELINE_ENV) or tracking.derived_pipeline_id(params)


@contextlib.contextmanager
def kit(stage: str, params: Params, args: argparse.Namespace, own_runs: bool = False) -> Iterator[Kit]:
    """Distributed init, the pipeline id and (rank 0, unless ``own_runs``) the stage's MLflow run.

    Rank 0 probes the tracking store first, for ``own_runs`` stages too: a store that is
    unreachable or unwritable fails the stage in seconds, before any work.
    """
    ctx = init_from_env()
    pipeline_id = resolve_pipeline_id(getattr(args, "pipeline_id", None), params)
    if ctx.is_main:
        tracking_store.open_store(f"soho-{params.profile}")
    if own_runs or not ctx.is_main:
        yield Kit(stage, pipeline_id, ctx)
        return
    with tracking.stage_run(stage, params, getattr(args, "task", None), pipeline_id=pipeline_id) as mlflow:
        yield Kit(stage, pipeline_id, ctx, mlflow)


def run(
    stage: str,
    body: Callable[[Params, argparse.Namespace], None],
    configure: Callable | None = None,
    *,
    own_runs: bool = False,
) -> int:
    """Run one stage: parse, log, load the parameters, open the kit, call ``body(params, args)``.

    User errors (:data:`USER_ERRORS`, and the ``OSError`` of a full disk or of permissions,
    :func:`soho.os_errors.describe`) become one line on stderr and exit code 2.
    """
    args = parser(stage, body, configure).parse_args()
    rank = f" rank {os.environ.get('RANK', '?')}" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {stage}{rank} %(levelname)s %(message)s")
    try:
        params = load_params(args.params, args.profile)
        with kit(stage, params, args, own_runs) as args.kit:
            body(params, args)
    except USER_ERRORS as err:
        print(f"error: {stage}: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, permissions, a read-only mount: one line naming the path
        message = os_errors.describe(err)
        if message is None:
            raise
        print(f"error: {stage}: {message}", file=sys.stderr)
        return 2
    return 0
