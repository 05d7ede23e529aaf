"""Fine-tuned models as MLflow pyfunc models that load without pickle and without code from the run.

A logged model is data: ``data/soho/{model.safetensors, model.json, tokenizer/}``. Its
``MLmodel`` names this module as the ``loader_module`` (MLflow's loader-module workflow), so
``mlflow.pyfunc.load_model`` and ``mlflow models serve`` build it with the *installed*
``soho``; nothing is unpickled and no code travels with the model. :func:`load_model` and
:func:`fetch` check a model folder before MLflow reads it (:func:`artifact.check`), because a
hostile ``MLmodel`` could name another loader. README, "Serving a fine-tuned model".
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from soho.serving.artifact import LOADER_MODULE, ModelArtifactError, Settings, check  # noqa: F401

__all__ = ["ModelArtifactError", "fetch", "load_model", "log_model", "signature"]


def signature(task_name: str):
    """Raw inputs (base64 images per ``Task.image_inputs``, then ``text``) -> the task's ``outputs``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from soho.serving.model import TEXT
    from soho.tasks import get

    task = get(task_name)
    inputs = Schema([ColSpec("string", name) for name in (*task.image_inputs, TEXT)])
    outputs = Schema([ColSpec(kind, name) for name, kind in task.outputs.items()])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_model(module, params, name: str = "model"):
    """Log ``module`` (a fine-tuned ``TaskModel``) into the active MLflow run as a pyfunc model."""
    import mlflow.pyfunc

    from soho import tracking
    from soho.models.fusion import load_tokenizer
    from soho.serving import artifact
    from soho.tasks import finetune_params

    task = module.task.name
    finetune = finetune_params(params, task)
    settings = Settings(
        task=task, text_only=module.text_only, answers=module.answers, itc_weight=module.itc_weight,
        vd=module.vd, model=params.model, frames=finetune.video_frames, video_size=finetune.video_size,
        batch_size=finetune.eval_batch_size,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        data = artifact.write(Path(tmp) / artifact.DATA_DIR, module, settings, load_tokenizer(params.model.text.init))
        return mlflow.pyfunc.log_model(
            name=name,
            loader_module=LOADER_MODULE,
            data_path=str(data),
            signature=signature(task),
            pip_requirements=tracking.pinned_requirements(artifact.REQUIREMENTS),  # inferring them costs ~9 s
        )


def fetch(model_uri: str, dst: Path | None = None) -> Path:
    """Download ``model_uri`` (``runs:/...``, ``models:/...``, a folder) into a new folder and check it.

    Returns the model's local folder; a refused download is deleted, so nothing half-trusted stays.
    """
    import mlflow.artifacts

    target = Path(tempfile.mkdtemp(prefix="soho-model-", dir=dst))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(target)))
        check(local, model_uri)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return local


def load_model(model_uri: str):
    """``mlflow.pyfunc.load_model`` of a checked copy of ``model_uri``; ``predict`` takes a DataFrame.

    The copy is deleted once loaded: the model holds its weights and tokenizer in memory.
    """
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="soho-load-") as tmp:
        return mlflow.pyfunc.load_model(str(fetch(model_uri, Path(tmp))))


def _load_pyfunc(data_path: str):
    """MLflow's loader-module entry point: the model in ``<model>/data/soho``, its folder checked first."""
    from soho.serving.model import SohoPyfunc

    folder = Path(data_path)
    check(folder.parents[1])
    return SohoPyfunc.from_folder(folder)
