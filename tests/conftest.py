"""Shared fixtures: a tiny embedded data set and a loopback HTTP server."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from soho.config import ModelParams, SplitSizes, SyntheticData, TextParams, VdParams
from soho.data.embedded import datasets

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def tiny_data() -> SyntheticData:
    return SyntheticData(
        image_size=64,
        captions_per_image=2,
        coco=SplitSizes(train=12, val=4, test=4),
        flickr30k=SplitSizes(train=6, val=3, test=3),
        vg_images=5,
        vqa_questions_per_image=2,
        nlvr2=SplitSizes(train=8, val=4, test=4),
        snli_ve_hypotheses_per_image=3,
        msrvtt=SplitSizes(train=4, val=2, test=2),
        clip_frames=3,
        clip_size=32,
        clip_format="mp4",  # MP4 clips, as the real MSR-VTT and the embedded run (PyAV)
    )


def tiny_model(
    layers: int = 1, vd: int = 8, dead_after: int = 50, embed_dim: int = 256, freeze_words: bool = False
) -> ModelParams:
    """``params.yaml: model`` at test size: a 1-layer MiniLM fusion, a small VD, the reduced ResNet."""
    text = TextParams(num_layers=layers, freeze_word_embeddings=freeze_words)
    return ModelParams(text=text, vd=VdParams(size=vd, dead_after=dead_after), embed_dim=embed_dim)


@contextlib.contextmanager
def scratch_folder(request: pytest.FixtureRequest, tmp_path_factory, name: str) -> Iterator[Path]:
    """A folder shared by a module's tests, removed when none of them failed while it lived.

    Why: ``tmp_path_retention_policy = "failed"`` removes a passed test's own ``tmp_path``, but
    pytest keeps every ``tmp_path_factory`` folder to the end of the session. A few of ours hold
    gigabytes of checkpoints (the two-rank real-model runs, the DVC project), and all of them at once
    ran the CI machine out of disk.
    """
    root = tmp_path_factory.mktemp(name)
    failed_before = request.session.testsfailed
    yield root
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    """A tiny generated data set (read-only for tests: copy before changing it)."""
    return datasets.generate(tmp_path_factory.mktemp("tiny") / "raw", tiny_data(), seed=0)


@pytest.fixture(scope="session")
def tiny_shards(tiny_raw, tmp_path_factory) -> Path:
    """WebDataset shards of the tiny data set (read-only for tests)."""
    from soho.data import shards
    from soho.data.catalog import DATASETS

    out = tmp_path_factory.mktemp("tiny-shards") / "shards"
    shards.write_all(DATASETS, tiny_raw, out, 5, 0.0)
    return out


def run_validate_stage(root: Path) -> subprocess.CompletedProcess:
    """The `validate` stage in ``root`` (a repo copy), as DVC runs it, on the copy's own ``soho`` package.

    Why ``PYTHONPATH``: without it ``soho`` is imported from wherever the virtual environment's
    editable install points, which need not be the checkout under test (a git worktree, say).
    """
    env = {"PATH": "/usr/bin", "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "stages/validate.py"], cwd=root, capture_output=True, text=True, env=env)


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """The code, reference bands, committed results and parameters, in a scratch folder."""
    for name in ("soho", "stages", "reference", "results", "profiles"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "submissions"))
    shutil.copy(REPO / "params.yaml", tmp_path)
    return tmp_path
