"""The results table: this run's metrics beside the papers' numbers, baselines and ablations.

Inputs are the DVC metrics files (``results/<task>.json``: variant -> split -> metric,
``results/pretrain.json``, ``results/ablations.json``), ``reference/paper.yaml`` and, for the
embedded profile, the reference runs (``reference/runs/*``, seeds x CPU kernel settings). The
output is ``results/table.json`` (the data) and ``results/table.md`` (the same, rendered).
Nothing in it is typed by hand: a number is either read from a file or shown as "n/a".
Why the reference runs: one run's difference between two rows means nothing until it is set
against how much that difference moves between seeds and CPUs; the table shows both.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from soho.ablations import REPORTED as ABLATION_METRICS
from soho.bands import SIGNIFICANCE
from soho.config import read_yaml

RETRIEVAL = ("tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "r_mean")
MAIN_ROWS: dict[str, tuple[str, tuple[str, ...]]] = {  # task -> (split, metrics), in table order
    "retrieval_coco": ("test", RETRIEVAL),
    "retrieval_flickr30k": ("test", RETRIEVAL),
    "retrieval_msrvtt": (
        "test",
        ("ir_r1", "ir_r5", "ir_r10", "ir_median_rank", "tr_r1", "tr_r5", "tr_r10", "tr_median_rank", "r_mean"),
    ),
    "vqa": ("val2014", ("overall", "yes_no", "number", "other")),
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


def load_results(results_dir: Path) -> dict[str, dict]:
    """Every ``<name>.json`` metrics file in ``results_dir`` (not the table itself)."""
    found = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        if path.stem != "table":
            found[path.stem] = json.loads(path.read_text())
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


def _paper(reference: dict, key: str, paper: str) -> dict | None:
    entry = reference.get("metrics", {}).get(key, {}).get(paper)
    return entry if entry and entry.get("value") is not None else None


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
    results: dict[str, dict], reference: dict, header: dict[str, str], runs: dict[str, dict] | None = None
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
            soho, scl = _paper(reference, key, "soho"), _paper(reference, key, "scl")
            main.append(
                {
                    "task": task,
                    "split": split,
                    "metric": metric,
                    "soho_paper": soho["value"] if soho else None,
                    "soho_checked": bool(soho and soho.get("checked")),
                    "scl_paper": scl["value"] if scl else None,
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


def _cell(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _spread_cell(value: dict | None, digits: int) -> str:
    if not value:
        return "n/a"
    text = f"{value['mean']:+.{digits}f} ± {value['sd']:.{digits}f}"
    return text if value["significant"] else text + " n.s."


def _ablation_cell(value: float | None, vs_default: dict | None) -> str:
    if value is None or not vs_default:
        return _cell(value, 3)
    return f"{value:.3f} (Δ {_spread_cell(vs_default, 3)})"


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown(table: dict[str, Any]) -> str:
    """``results/table.md``: the header, then the main, baseline, ablation and pre-training tables."""
    h = table["header"]
    out = [
        "# SOHO results",
        "",
        f"Profile **{h['profile']}** · commit `{h['commit']}` · {h['date']} · generated by `dvc repro` "
        "(stage `report`), not edited by hand.",
        "",
        "## Downstream tasks: the papers and this run",
        "",
    ]
    show_scl = any(r["this_run_scl"] is not None for r in table["main"])
    head = ["task", "split", "metric", "SOHO paper", "SCL paper", "this run"] + (["this run +SCL"] if show_scl else [])
    rows = []
    for r in table["main"]:
        paper = _cell(r["soho_paper"], 2) + ("" if r["soho_paper"] is None or r["soho_checked"] else "*")
        row = [r["task"], r["split"], r["metric"], paper, _cell(r["scl_paper"], 2), _cell(r["this_run"])]
        rows.append(row + ([_cell(r["this_run_scl"])] if show_scl else []))
    out += _table(head, rows)
    out += [
        "",
        "\\* transcribed without the PDF at hand, not yet checked (`reference/paper.yaml`). "
        "n/a: not reported, or not transcribed. tr = image (video) to text, ir = text to image "
        "(video). The embedded profile's data are generated, so its numbers are comparable with "
        "each other, not with the papers'.",
        "",
        "## Baselines: what pre-training buys",
        "",
    ]
    out += _table(
        ["model", *table["baseline_columns"]],
        ([b["label"], *(_cell(b["values"][c]) for c in table["baseline_columns"])] for b in table["baselines"]),
    )
    if table.get("differences"):
        n = len(table["reference_runs"])
        out += [
            "",
            f"## Differences over the {n} reference runs (seeds x CPU kernel settings)",
            "",
            "Mean ± sd over the runs behind validate's bands (`reference/runs/`), in the metric's points; "
            f"n.s.: the mean is within {SIGNIFICANT_SD:g} sd of zero, so one run's order of the two rows "
            "can flip with the seed or the CPU.",
            "",
        ]
        out += _table(
            ["difference", *table["baseline_columns"]],
            (
                [d["label"], *(_spread_cell(d["values"].get(c), 1) for c in table["baseline_columns"])]
                for d in table["differences"]
            ),
        )
    if table["ablations"]:
        spread_known = any(a.get("vs_default") for a in table["ablations"])
        out += [
            "",
            "## Ablations (short pre-training, held-out metrics)",
            "",
            "Every row pre-trains on the same short schedule (`ablations` in params.yaml; "
            "`dvc repro ablations/dvc.yaml`, outside the default pipeline). "
            + (
                "Beside each value: the row's difference from `default` over the reference runs "
                f"(mean ± sd); n.s. marks a difference within {SIGNIFICANT_SD:g} sd of zero, which this "
                "table cannot tell from seed noise."
                if spread_known
                else "No reference run carries these rows, so their spread between seeds is unknown: "
                "a difference from `default` here is one run's, and may be seed noise."
            )
            + " Run a row at full length as a DVC experiment to compare (README, Validation and ablations).",
            "",
        ]
        names = list(ABLATION_METRICS)
        out += _table(
            ["row", *names],
            (
                [a["name"], *(_ablation_cell(a["values"][m], a.get("vs_default", {}).get(m)) for m in names)]
                for a in table["ablations"]
            ),
        )
    if table["pretrain"]:
        out += ["", "## Pre-training (held-out)", ""]
        labels = list(next(iter(table["pretrain"].values())))
        rows = ([k, *(_cell(v.get(c), 3) for c in labels)] for k, v in table["pretrain"].items())
        out += _table(["metric", *labels], rows)
    return "\n".join(out) + "\n"
