"""The ablation rows of the results table: short pre-training runs that differ in one setting.

Every row, ``default`` included, pre-trains for ``ablations.steps`` steps with the same
seed and data, then reports the held-out pre-training metrics, so rows compare like with
like. MVM accuracy is over a k-way dictionary, so it only compares rows with the same VD
size; ITM and MLM accuracy compare across all rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soho.config import Params, with_overrides

DEFAULT = "default"
REPORTED = ("heldout_itm_acc", "heldout_mlm_acc", "heldout_mvm_acc", "heldout_vd_used_fraction")


def rows(params: Params) -> dict[str, dict[str, Any]]:
    """Row name -> overrides, ``default`` (no override) first."""
    return {DEFAULT: {}} | dict(params.ablations.runs)


def ablation_params(params: Params, name: str, overrides: dict[str, Any]) -> Params:
    """``params`` with the row's overrides and the shared short schedule."""
    schedule = {
        "pretrain.optim.steps": params.ablations.steps,
        "pretrain.optim.batch_size": params.ablations.batch_size,
        "pretrain.optim.checkpoint_every": params.ablations.steps,
    }
    return with_overrides(params, overrides | schedule, source=f"ablations.runs.{name}")


def out_dir(params: Params, name: str) -> Path:
    return Path(params.paths.checkpoints) / "ablations" / name


def summary(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics a row shows (those the run produced: no VD means no MVM and no VD usage)."""
    return {key: metrics[key] for key in REPORTED if key in metrics}
