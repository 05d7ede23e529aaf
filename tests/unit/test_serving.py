"""The served model of every task: evaluation's preprocessing, the task's outputs, one-line input errors."""

from __future__ import annotations

import base64
import io

import pandas as pd
import pytest
import torch
from PIL import Image

from soho.data.loaders import LoaderSpec
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.serving import signature
from soho.serving.model import SohoPyfunc, _decode_image
from soho.tasks import get
from soho.tasks.model import TaskModel

from ..conftest import tiny_model

MODEL = tiny_model()
ANSWERS = ["yes", "no", "red", "two"]


def encoded(color: tuple[int, int, int], size=(40, 30), fmt="PNG", frames: int = 1) -> bytes:
    """An image (or an animated GIF of ``frames`` shades) as a file's bytes."""
    images = [Image.new("RGB", size, tuple(min(255, c + 40 * i) for c in color)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format=fmt, save_all=frames > 1, append_images=images[1:])
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def served(task_name: str, batch_size: int = 2) -> SohoPyfunc:
    torch.manual_seed(0)
    task = get(task_name)
    module = TaskModel(SohoModel(MODEL), task, answers=ANSWERS if task_name == "vqa" else None).eval()
    spec = LoaderSpec(None, load_tokenizer(MODEL.text.init), MODEL.image_size, MODEL.text.max_length, batch_size, 0)
    return SohoPyfunc(module, task, spec)


# One shard sample per task as the pipelines decode it, and the request row that carries the same data.
SHARD_SAMPLES = {
    "vqa": lambda img: {
        "jpg": img[0],
        "json": {"questions": [{"question": "what color?", "answers": ["red"] * 10, "question_id": 1}]},
    },
    "nlvr2": lambda img: {
        "img0.png": img[0],
        "img1.png": img[1],
        "json": {"sentence": "what color?", "label": True},
        "__key__": "dev-1-0-0",
    },
    "snli_ve": lambda img: {"jpg": img[0], "json": {"hypotheses": [{"hypothesis": "what color?", "label": "neutral"}]}},
    "retrieval_coco": lambda img: {"jpg": img[0], "json": {"captions": ["what color?"]}, "__key__": "k"},
    "retrieval_msrvtt": lambda img: {"gif": img[0], "json": {"captions": ["what color?"]}, "__key__": "k"},
}


@pytest.mark.parametrize("task_name", sorted(SHARD_SAMPLES))
def test_a_request_row_is_preprocessed_as_evaluation_preprocesses_its_shard_sample(task_name):
    model = served(task_name)
    fmt, frames = ("GIF", 3) if task_name == "retrieval_msrvtt" else ("JPEG", 1)
    files = [encoded((200, 30, 30), fmt=fmt, frames=frames), encoded((20, 30, 200), fmt=fmt, frames=frames)]
    columns = model.task.image_inputs
    decoded = [_decode_image(f"x.{fmt.lower()}", data) for data in files[: len(columns)]]
    spec = model.spec
    [expected] = model.task.to_samples(spec, ANSWERS, 0)(SHARD_SAMPLES[task_name](decoded))[:1]
    row = {column: b64(data) for column, data in zip(columns, files, strict=False)} | {"text": "what color?"}
    assert torch.equal(model.pixels(row, 0), expected["pixels"])
    batch = spec.collate()([{"pixels": expected["pixels"], "text": expected["text"]}])
    out = model.predict(pd.DataFrame([row]))
    assert list(out.columns) == list(model.task.outputs) == [c.name for c in signature(task_name).outputs.inputs]
    prediction = model.task.predict(model.module, batch)
    if "label" in out:  # the predicted class by name
        assert out["label"].tolist() == [model.task.label_names[i] for i in prediction]
    elif "answer" in out:
        assert out["answer"].tolist() == prediction
    else:  # retrieval: the ITM match probability
        assert out["score"].tolist() == pytest.approx(prediction)
    assert out["score"].between(0, 1).all()


def test_each_task_takes_its_images_and_a_text():
    assert [c.name for c in signature("vqa").inputs.inputs] == ["image", "text"]
    assert [c.name for c in signature("nlvr2").inputs.inputs] == ["left_image", "right_image", "text"]
    assert [c.name for c in signature("retrieval_coco").outputs.inputs] == ["score"]
    assert {c.type.name for c in signature("snli_ve").inputs.inputs} == {"string"}


def test_rows_are_scored_in_batches_and_keep_their_order():
    model = served("snli_ve", batch_size=2)
    images = [b64(encoded(color)) for color in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    rows = pd.DataFrame({"image": images, "text": ["a red square", "a green square", "a blue square"]})
    together = model.predict(rows)
    alone = pd.concat([model.predict(rows.iloc[[i]]) for i in range(3)], ignore_index=True)
    assert len(together) == 3 and set(together["label"]) <= {"entailment", "neutral", "contradiction"}
    assert together["label"].tolist() == alone["label"].tolist()
    assert together["score"].tolist() == pytest.approx(alone["score"].tolist(), abs=1e-5)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"image": "not base64!", "text": "what?"}, r"row 0, column 'image': not a base64-encoded image"),
        ({"image": b64(b"plain text, not an image"), "text": "what?"}, r"row 0, column 'image': not a base64"),
        ({"image": b64(encoded((1, 2, 3))), "text": " "}, r"row 0, column 'text': not a non-empty string"),
    ],
    ids=["not-base64", "not-an-image", "no-text"],
)
def test_a_bad_row_is_one_line_naming_row_and_column(row, message):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=message) as raised:
        served("vqa").predict(pd.DataFrame([row]))
    assert raised.value.get_http_status_code() == 400 and "\n" not in raised.value.message


def test_video_rows_use_evaluation_frames():
    """A clip for the video model: ``finetune.video_frames`` frames, as its shards' ``gif`` is read."""
    model = served("retrieval_msrvtt")
    pixels = model.pixels({"image": b64(encoded((10, 200, 10), fmt="GIF", frames=5))}, 0)
    assert pixels.shape == (model.spec.frames, 3, MODEL.image_size, MODEL.image_size)
    still = served("retrieval_coco").pixels({"image": b64(encoded((10, 200, 10)))}, 0)
    assert still.shape == (3, MODEL.image_size, MODEL.image_size)
