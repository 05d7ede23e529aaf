"""The served model: raw request rows (base64 images and a text) in, the task's answers or scores out.

Why a plain class and not ``mlflow.pyfunc.PythonModel``: a ``PythonModel`` is logged as a
cloudpickle (or as a code file shipped with the model); this one is built by the installed
package's ``_load_pyfunc`` from data alone, the loader-module workflow of ``mlflow.pyfunc``.
Preprocessing is evaluation's: images decoded by WebDataset's own ``pil`` decoder (what the
shard pipelines use), then the task's transform; text through the evaluation collate.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import pandas as pd
import torch
import webdataset as wds
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from safetensors import SafetensorError

from soho.config import ConfigError
from soho.data.loaders import LoaderSpec
from soho.models.soho import SohoModel
from soho.serving import artifact
from soho.tasks import get
from soho.tasks.base import Task
from soho.tasks.model import TaskModel

TEXT = "text"
_decode_image = wds.autodecode.ImageHandler("pil")  # the shard pipelines' decoder: PIL, converted to RGB


class SohoPyfunc:
    """``predict(DataFrame) -> DataFrame`` for one fine-tuned task model."""

    def __init__(self, module: TaskModel, task: Task, spec: LoaderSpec):
        self.module, self.task, self.spec = module.eval(), task, spec
        self.collate = spec.collate()

    @classmethod
    def from_folder(cls, folder: Path) -> SohoPyfunc:
        """Rebuild from ``data/soho``: the architecture from ``model.json``, then the safetensors weights."""
        from transformers import BertTokenizerFast

        from soho.train import checkpoint

        settings = artifact.read_settings(folder)
        # the ImageNet file only initialises what the weights replace; the text init gives the BERT architecture
        model = settings.model.model_copy(update={"vision": settings.model.vision.model_copy(update={"weights": None})})
        try:
            task = get(settings.task)
            module = TaskModel(
                SohoModel(model), task, settings.text_only, settings.answers, settings.itc_weight, settings.vd
            )
            checkpoint.load_weights(module, folder / artifact.WEIGHTS)
        except (ConfigError, OSError, RuntimeError, ValueError, SafetensorError) as error:
            raise artifact.ModelArtifactError(f"{folder}: {str(error).splitlines()[0]}") from None
        tokenizer = BertTokenizerFast.from_pretrained(str(folder / artifact.TOKENIZER), local_files_only=True)
        spec = LoaderSpec(
            folder, tokenizer, model.image_size, model.text.max_length, settings.batch_size, seed=0,
            frames=settings.frames, video_size=settings.video_size,
            resize=model.vision.resize, max_long_side=model.vision.max_long_side,
        )  # fmt: skip
        return cls(module, task, spec)

    def predict(self, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """One output row per input row; columns ``task.outputs``."""
        rows = model_input.to_dict("records")
        columns: dict[str, list] = {name: [] for name in self.task.outputs}
        for start in range(0, len(rows), self.spec.batch_size):
            chunk = rows[start : start + self.spec.batch_size]
            samples = [
                {"pixels": self.pixels(row, start + i), "text": self.text(row, start + i)}
                for i, row in enumerate(chunk)
            ]
            with torch.inference_mode():
                out = self.task.serve(self.module, self.collate(samples))
            for name in columns:
                columns[name] += out[name]
        return pd.DataFrame(columns)

    def pixels(self, row: dict, index: int) -> torch.Tensor:
        images = [self.image(row, column, index) for column in self.task.image_inputs]
        return self.task.serving_pixels(images, self.spec)

    def image(self, row: dict, column: str, index: int):
        value = row.get(column)
        try:
            data = base64.b64decode(value, validate=True) if isinstance(value, str) else None
            image = _decode_image("image.jpg", data) if data else None  # the name only routes it to the decoder
        except (binascii.Error, OSError, ValueError):
            image = None
        if image is None:
            raise _bad_input(f"row {index}, column {column!r}: not a base64-encoded image (PNG, JPEG or GIF)")
        return image

    def text(self, row: dict, index: int) -> str:
        value = row.get(TEXT)
        if not isinstance(value, str) or not value.strip():
            raise _bad_input(f"row {index}, column {TEXT!r}: not a non-empty string")
        return value


def _bad_input(message: str) -> MlflowException:
    """A 400 from ``mlflow models serve`` (a plain exception would be a 500)."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)
