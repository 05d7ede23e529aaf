"""Pre-training variants (SOHO, SOHO + SCL) and the fingerprint that ties a checkpoint to its inputs.

Why a module of its own: fine-tuning needs to know where each pre-trained checkpoint lives
and what it depends on, without importing the pre-training orchestration.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from soho.config import ConfigError, Params, with_overrides
from soho.data import shards
from soho.data.integrity import sha256_of

# Pre-training variant -> its name under checkpoints/ and results/ (and its DVC stage).
VARIANTS = {"soho": "pretrain", "scl": "pretrain_scl"}

# The code a pre-trained checkpoint depends on (the `pretrain` stage's code dependencies in dvc.yaml).
PRETRAIN_CODE = (
    "models",
    "objectives",
    "train",
    "eval/heldout.py",
    "data/loaders.py",
    "data/shards.py",
    "data/integrity.py",
    "data/shard_checks.py",
    "sections.py",
)


def variant_params(params: Params, variant: str) -> Params:
    """What ``variant`` trains with: ``soho`` as given, ``scl`` with ``pretrain_scl.overrides``."""
    if variant not in VARIANTS:
        raise ConfigError(f"pre-training variant {variant!r}: expected one of {sorted(VARIANTS)}")
    if variant == "soho":
        return params
    outside = sorted(k for k in params.pretrain_scl.overrides if not k.startswith("pretrain."))
    if outside:
        raise ConfigError(
            f"pretrain_scl.overrides: only pretrain.* keys may differ (fine-tuning rebuilds the same model), got {outside}"
        )
    scl = with_overrides(params, dict(params.pretrain_scl.overrides), source="pretrain_scl.overrides")
    if scl.pretrain.objectives.scl <= 0:
        raise ConfigError(
            "pretrain_scl.overrides: must switch SCL on (pretrain.objectives.scl > 0), "
            f"got pretrain.objectives.scl={scl.pretrain.objectives.scl}"
        )
    return scl


def variant_dir(params: Params, variant: str) -> Path:
    return Path(params.paths.checkpoints) / VARIANTS[variant]


def code_digest(parts: tuple[str, ...], root: Path | None = None) -> str:
    """sha256 over the Python sources of ``parts`` (folders or files under the ``soho`` package).

    Why: a finished run is not repeated when its fingerprint matches. DVC re-runs a stage
    when its code changes, and without the code in the fingerprint the stage would hand back
    the weights and metrics the old code made.
    """
    root = root or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for part in parts:
        path = root / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def fingerprint(params: Params) -> str:
    """What a resumable checkpoint must match: model, pre-training settings, seed, data and code."""
    blob = json.dumps(
        {
            "model": params.model.model_dump(mode="json"),
            "pretrain": params.pretrain.model_dump(mode="json"),
            "seed": params.seed,
        },
        sort_keys=True,
    )
    stats = Path(params.paths.shards) / "stats.json"
    blob += stats.read_text() if stats.exists() else ""
    blob += "".join(shards.dataset_digest(Path(params.paths.shards), name) for name in params.pretrain.datasets)
    blob += code_digest(PRETRAIN_CODE)
    weights = params.model.vision.weights  # the file, not just its name: a retrained stand-in keeps the name
    blob += sha256_of(Path(weights)) if weights is not None and Path(weights).is_file() else ""
    return hashlib.sha256(blob.encode()).hexdigest()
