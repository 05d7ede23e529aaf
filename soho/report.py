"""The results table: this run's metrics beside the papers' numbers, baselines and ablations.

Inputs are the DVC metrics files (``results/<task>.json``: variant -> split -> metric,
``results/pretrain.json``, ``results/ablations.json``), ``reference/paper.yaml`` (read by
``soho.paper_numbers``: each paper's value with its status, or why it has none) and, for the
embedded profile, the reference runs (``reference/runs/*``, seeds x CPU kernel settings). The
output is ``results/table.json`` (the data) and ``results/table.md`` (the same, rendered).
Nothing in it is typed by hand: a number is either read from a file or shown as "n/a"
(a paper's cell says why: not reported by the paper, task not in the paper, not transcribed).
Why the reference runs: one run's difference between two rows means nothing until it is set
against how much that difference moves between seeds and CPUs; the table shows both.
The Markdown rendering is ``soho.report_markdown`` (``render_markdown`` is re-exported here).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from soho.ablations import REPORTED as ABLATION_METRICS
from soho.bands import SIGNIFICANCE
from soho.config import read_yaml
from soho.paper_numbers import PAPERS, PaperNumbers
from soho.report_markdown import render_markdown  # noqa: F401 - callers render through soho.report

RETRIEVAL = ("tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "r_mean")
MAIN_ROWS: dict[str, tuple[str, tuple[str, ...]]] = {  # task -> (split, metrics), in table order
    "retrieval_coco": ("test", RETRIEVAL),
    "retrieval_flickr30k": ("test", RETRIEVAL),
    "retrieval_msrvtt": (
        "test",
        ("ir_r1", "ir_r5", "ir_r10", "ir_median_rank", "tr_r1", "tr_r5", "tr_r10", "tr_median_rank", "r_mean"),
    ),
    "vqa": ("val2014", ("overall", "yes_no", "number", "other")),  # finetune.vqa_protocol: val
    "vqa:test-dev2015": ("test-dev2015", ("overall",)),  # the papers' split: EvalAI's score, from server_scores/
    "nlvr2": ("dev", ("accuracy", "consistency")),
    "nlvr2:test1": ("test1", ("accuracy", "consistency")),
    "snli_ve": ("dev", ("accuracy",)),
    "snli_ve:test": ("test", ("accuracy",)),
}
HEADLINE: dict[str, tuple[str, str, str]] = {  # task -> (split, metric, column label) for the baselines
    "retrieval_coco": ("test", "r_mean", "COCO R-mean"),
    "retrieval_flickr30k": ("test", "r_mean", "Flickr R-mean"),
    "retrieval_msrvtt": ("test", "r_mean", "MSR-VTT R-mean"),
    "vqa": ("val2014", "overall", "VQA"),
    "nlvr2": ("test1", "accuracy", "NLVR2 test-P"),
    "snli_ve": ("test", "accuracy", "SNLI-VE test"),
}
BASELINES = (  # variant in results/<task>.json -> row label
    ("chance", "chance"),
    ("text_only", "text-only (no image)"),
    ("scratch", "no pre-training"),
    ("pretrained", "SOHO (pre-trained)"),
    ("pretrained_scl", "SOHO + SCL (pre-trained)"),
)


def load_results(results_dir: Path, server_dir: Path | None = None) -> dict[str, dict]:
    """Every ``<name>.json`` metrics file in ``results_dir`` (not the table itself), with the
    server's scores of ``server_dir/<name>.json`` (``paths.server_scores``) merged in.

    A metric both hold is an error naming both files: a local number and a server's must not
    silently replace each other (test-dev's local entry holds only its question count).
    """
    found = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        if path.stem != "table":
            found[path.stem] = json.loads(path.read_text())
    for path in sorted(Path(server_dir).glob("*.json")) if server_dir is not None else ():
        task = found.setdefault(path.stem, {})
        for variant, splits in json.loads(path.read_text()).items():
            held = task.setdefault(variant, {})
            for split, metrics in splits.items():
                local = held.setdefault(split, {})  # test-dev's local entry: its question count
                both = sorted(set(local) & set(metrics))
                if both:
                    raise ValueError(
                        f"{path}: {variant}/{split}/{both[0]} is also in {Path(results_dir) / path.name}: "
                        "one metric, one source"
                    )
                local.update(metrics)
    return found


def lookup(results: dict[str, dict], key: str) -> float | None:
    """``"task/variant/split/metric"`` (or any ``/`` path into a results file) -> value or None."""
    node: Any = results
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def load_reference(path: Path) -> dict[str, Any]:
    """A reference YAML file; a missing or malformed one is a ConfigError naming the file."""
    return read_yaml(Path(path), "reference file")


def _paper_cells(reference: PaperNumbers, key: str) -> dict[str, Any]:
    """Each paper's value for ``key`` with its status, or None with the reason (``<paper>_missing``)."""
    cells: dict[str, Any] = {}
    for paper in PAPERS:
        found = reference.reported(key, paper)
        cells |= {f"{paper}_paper": found.value, f"{paper}_status": found.status, f"{paper}_missing": found.missing}
    return cells


SIGNIFICANT_SD = SIGNIFICANCE  # a difference counts when its mean over the reference runs exceeds 2 sd
DIFFERENCES = (  # (label, better variant, worse variant): the comparisons the table exists for
    ("SOHO − no pre-training", "pretrained", "scratch"),
    ("SOHO − text-only", "pretrained", "text_only"),
    ("SOHO + SCL − SOHO", "pretrained_scl", "pretrained"),
    ("SOHO + SCL − no pre-training", "pretrained_scl", "scratch"),
)


def load_runs(runs_dir: Path) -> dict[str, dict[str, dict]]:
    """Every reference run under ``runs_dir`` (one folder of results/*.json each), by name."""
    if not Path(runs_dir).is_dir():
        return {}
    return {path.name: load_results(path) for path in sorted(Path(runs_dir).iterdir()) if path.is_dir()}


def spread(values: list[float]) -> dict[str, Any] | None:
    """Mean and sd of a difference over the runs, and whether it clears SIGNIFICANT_SD sd."""
    if len(values) < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    return {"mean": mean, "sd": sd, "n": len(values), "significant": abs(mean) > SIGNIFICANT_SD * sd}


def _differences(runs: dict[str, dict], columns: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """Each DIFFERENCES row's spread over the reference runs, per headline column."""
    rows = []
    for label, better, worse in DIFFERENCES:
        cells = {}
        for task, split, metric, column in columns:
            pairs = [
                (lookup(r, f"{task}/{better}/{split}/{metric}"), lookup(r, f"{task}/{worse}/{split}/{metric}"))
                for r in runs.values()
            ]
            cells[column] = spread([b - w for b, w in pairs if b is not None and w is not None])
        if any(cells.values()):
            rows.append({"label": label, "values": cells})
    return rows


def _ablation_spreads(runs: dict[str, dict]) -> dict[str, dict[str, dict | None]]:
    """Row -> metric -> spread of (row - default) over the reference runs."""
    found: dict[str, dict[str, dict | None]] = {}
    ablation_runs = [r["ablations"] for r in runs.values() if "default" in r.get("ablations", {})]
    rows = {name for r in ablation_runs for name in r if name != "default"}
    for name in sorted(rows):
        found[name] = {}
        for metric in ABLATION_METRICS:
            diffs = [
                r[name][metric] - r["default"][metric]
                for r in ablation_runs
                if r.get(name, {}).get(metric) is not None and r["default"].get(metric) is not None
            ]
            found[name][metric] = spread(diffs)
    return found


def build(
    results: dict[str, dict], reference: PaperNumbers, header: dict[str, str], runs: dict[str, dict] | None = None
) -> dict[str, Any]:
    """The table as data: header, main rows, baselines, differences over the reference runs, ablations, pre-training."""
    runs = runs or {}
    main = []
    for row_key, (split, metric_names) in MAIN_ROWS.items():
        task = row_key.split(":")[0]
        if task not in results:
            continue
        for metric in metric_names:
            key = f"{task}/pretrained/{split}/{metric}"
            main.append(
                {
                    "task": task,
                    "split": split,
                    "metric": metric,
                    **_paper_cells(reference, key),
                    "this_run": lookup(results, key),
                    "this_run_scl": lookup(results, f"{task}/pretrained_scl/{split}/{metric}"),
                }
            )
    columns = [(task, *spec) for task, spec in HEADLINE.items() if task in results]
    baselines = []
    for variant, label in BASELINES:
        values = {c[3]: lookup(results, f"{c[0]}/{variant}/{c[1]}/{c[2]}") for c in columns}
        if any(v is not None for v in values.values()):
            baselines.append({"variant": variant, "label": label, "values": values})
    ablation_spreads = _ablation_spreads(runs)
    ablations = [
        {
            "name": name,
            "values": {m: row.get(m) for m in ABLATION_METRICS},
            "vs_default": ablation_spreads.get(name, {}),
        }
        for name, row in results.get("ablations", {}).items()
    ]
    return {
        "header": header,
        "main": main,
        "baseline_columns": [c[3] for c in columns],
        "baselines": baselines,
        "reference_runs": list(runs),
        "differences": _differences(runs, columns),
        "ablations": ablations,
        "pretrain": _heldout(results),
    }


PRETRAININGS = (("pretrain", "SOHO"), ("pretrain_scl", "SOHO + SCL"))  # results file -> column


def _heldout(results: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """Held-out pre-training metric -> {column: value} for each pre-training that ran."""
    ran = [(name, label) for name, label in PRETRAININGS if name in results]
    keys = sorted({k for name, _ in ran for k in results[name] if k.startswith("heldout_")})
    return {k: {label: results[name].get(k) for name, label in ran} for k in keys}
