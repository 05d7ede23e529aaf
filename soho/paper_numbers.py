"""``reference/paper.yaml``: the papers' reported numbers, each with its source and how far it was seen.

Why a schema: the file is typed by hand, and the table shows its values beside this run's.
A number without a status, a status without a number, or a misspelt field would otherwise
reach the table as a plausible cell; here it is a :class:`ConfigError` naming the key.
A value has a status (``paper``: read in the paper; ``third-party``: read in another paper's
or library's table that copies it; ``unverified``: seen in no stored source); a missing value
has the reason the table prints instead (``Missing``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from soho.config import read_yaml
from soho.overrides import ConfigError

Status = Literal["paper", "third-party", "unverified"]
Missing = Literal["not reported by the paper", "task not in the paper", "not transcribed"]
PAPERS = ("soho", "scl")
KEY_PATTERN = r"^[a-z0-9_]+/[a-z0-9_]+/[A-Za-z0-9_-]+/[a-z0-9_]+$"  # task/variant/split/metric
SHOWN_ERRORS = 3  # the error stays one readable line when a whole file is in an old schema
NOT_ENTERED: Missing = "not transcribed"  # a table row paper.yaml has no entry for


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reported(_Strict):
    """One paper's number for one metric: the value and its status, or why there is none."""

    value: float | None
    source: str = Field(min_length=1)
    status: Status | None = None
    missing: Missing | None = None

    @model_validator(mode="after")
    def _status_or_reason(self) -> Reported:
        if self.value is not None and (self.status is None or self.missing is not None):
            raise ValueError("a value needs a status (paper, third-party, unverified) and no `missing` reason")
        if self.value is None and (self.missing is None or self.status is not None):
            raise ValueError("a null value needs a `missing` reason and no status")
        return self


class MetricEntry(_Strict):
    """A metric of the table: each paper's number, and how far a paper-profile run may fall from SOHO's."""

    soho: Reported | None = None
    scl: Reported | None = None
    tolerance: float | None = Field(default=None, ge=0)
    # a split only a server scores (VQA test-dev: EvalAI, from results/submissions/): no run has a
    # local number for it, so validate lists it instead of failing it as missing
    scored_by: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _tolerance_with_soho(self) -> MetricEntry:
        if self.soho is not None and self.soho.value is not None and self.tolerance is None:
            raise ValueError("a SOHO value needs a tolerance: validate's paper-profile band is value ± tolerance")
        return self


class Paper(_Strict):
    """A paper the table cites (`papers.<name>`)."""

    title: str
    venue: str
    arxiv: str


class Ablation(_Strict):
    """A paper ablation not yet in the table (the VD size): its rows, or why they are null."""

    source: str
    missing: Missing | None = None
    rows: dict[str, float | None]


class ReportedClaim(_Strict):
    """A claim of the paper outside the table (the inference speed-up), with its status."""

    value: float
    status: Status
    source: str


class PaperNumbers(_Strict):
    """The whole file: the papers, the table's metrics, the tasks a paper has not, and the other claims."""

    papers: dict[Literal["soho", "scl"], Paper]
    metrics: dict[str, MetricEntry]
    tasks_not_in_paper: dict[Literal["soho", "scl"], list[str]] = {}
    vd_size_ablation: Ablation | None = None
    inference_speedup: ReportedClaim | None = None

    @model_validator(mode="after")
    def _keys_and_absent_tasks(self) -> PaperNumbers:
        for key in self.metrics:
            if not re.fullmatch(KEY_PATTERN, key):
                raise ValueError(f"metrics.{key}: not a <task>/<variant>/<split>/<metric> key")
        for paper, tasks in self.tasks_not_in_paper.items():
            for key, entry in self.metrics.items():
                if key.split("/")[0] in tasks and getattr(entry, paper) is not None:
                    raise ValueError(f"metrics.{key}.{paper}: {key.split('/')[0]} is in tasks_not_in_paper.{paper}")
        return self

    def reported(self, key: str, paper: str) -> Reported:
        """``paper``'s number for ``key``: its entry, else the reason the table shows for its absence."""
        if key.split("/")[0] in self.tasks_not_in_paper.get(paper, []):
            return Reported(value=None, source=f"tasks_not_in_paper.{paper}", missing="task not in the paper")
        entry = self.metrics.get(key)
        found = getattr(entry, paper) if entry is not None else None
        return found or Reported(value=None, source="no entry in reference/paper.yaml", missing=NOT_ENTERED)


def parse(data: dict, source: str) -> PaperNumbers:
    """``data`` (the loaded YAML) as :class:`PaperNumbers`; a bad entry is a ConfigError naming its key."""
    try:
        return PaperNumbers.model_validate(data)
    except ValidationError as err:
        lines = []
        for item in err.errors():
            loc = ".".join(str(part) for part in item["loc"])
            msg = item["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(item.get("input"), dict) else f" (got {item.get('input')!r})"
            lines.append(f"{loc}: {msg}{shown}" if loc else msg)
        more = f"; and {len(lines) - SHOWN_ERRORS} more" if len(lines) > SHOWN_ERRORS else ""
        raise ConfigError(f"{source}: " + "; ".join(lines[:SHOWN_ERRORS]) + more) from None


def load(path: Path) -> PaperNumbers:
    """``reference/paper.yaml`` read and checked (a missing file or bad YAML is a ConfigError too)."""
    return parse(read_yaml(Path(path), "reference file"), str(path))
