"""Atomic, resumable checkpoints: safetensors weights + a weights-only-loadable training state.

Layout: ``<dir>/step-00000100/{model.safetensors,state.pt}``, written into a temporary
folder and renamed, so a crash never leaves a half checkpoint that resume would pick.
Under DDP, rank 0 writes both, with every rank's own RNG states and data position
(gathered from the ranks) in ``state.pt``: one file, so one atomic rename covers them all.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model  # noqa: F401 - save_model re-exported
from torch import nn

from soho.io import atomic_directory, write_text

log = logging.getLogger(__name__)
STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot continue this run (say, it was written by another number of processes)."""


def rng_state() -> dict[str, Any]:
    """Every global RNG of this process: torch (and CUDA), Python's ``random``, NumPy's legacy one.

    NumPy's state is kept as a tensor and plain numbers: ``torch.load(weights_only=True)``
    refuses NumPy arrays.
    """
    _, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "gauss": (has_gauss, gauss)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    has_gauss, cached = numpy["gauss"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"], has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(directory: Path, step: int, model: nn.Module, training_state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``step`` under ``directory`` and prune all but the ``keep`` newest."""
    target = Path(directory) / f"step-{step:08d}"
    with atomic_directory(target) as staging:
        save_model(model, str(staging / "model.safetensors"))
        with open(staging / "state.pt", "wb") as handle:  # a handle, not a path: torch then keeps a full disk's OSError
            torch.save(training_state, handle)
    for old in sorted(list_checkpoints(directory))[:-keep]:
        shutil.rmtree(old)
    return target


def list_checkpoints(directory: Path) -> list[Path]:
    directory = Path(directory)
    if not directory.exists():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and STEP_DIR.match(p.name))


def latest(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_weights(model: nn.Module, path: Path, strict: bool = True) -> None:
    """Load ``model.safetensors`` from a checkpoint folder (or the file itself)."""
    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    missing, unexpected = load_model(model, str(file), strict=strict)
    if strict and (missing or unexpected):
        raise RuntimeError(f"{file}: missing {missing}, unexpected {unexpected}")


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=True)


def finish(directory: Path, fingerprint: str) -> None:
    """Mark the run in ``directory`` finished and drop its step checkpoints.

    Why: once the final weights are written elsewhere, the step checkpoints (weights plus
    optimizer state, 3x the model) only cost disk and DVC hashing time.
    """
    for old in list_checkpoints(directory):
        shutil.rmtree(old)
    write_text(Path(directory) / "finished", fingerprint)


def is_finished(directory: Path, fingerprint: str) -> bool:
    marker = Path(directory) / "finished"
    return marker.exists() and marker.read_text() == fingerprint


def start_over_if_changed(directory: Path, fingerprint: str, is_main: bool = True) -> None:
    """Delete ``directory``'s checkpoints when they were made under another ``fingerprint``.

    Why: resuming a checkpoint trained with other parameters or data would silently mix
    two runs; a changed configuration starts over instead.
    """
    directory = Path(directory)
    marker = directory / "fingerprint"
    if directory.exists() and (not marker.exists() or marker.read_text() != fingerprint):
        # also drops a ``finished`` marker of the old configuration
        log.info("parameters or data changed since the last checkpoint in %s: starting over", directory)
        shutil.rmtree(directory)
    if is_main:
        write_text(marker, fingerprint)
