"""EvalAI's scores of a VQA v2 submission -> ``server_scores/vqa.json``, which the report and validate read.

Why a file of its own: test-dev2015 and test2015 have no public answers, so ``finetune``
writes ``results/submissions/vqa.json`` and only EvalAI's server can score it. The score
the server returns comes back through here, checked, into the same ``variant -> split ->
metric`` layout as ``results/vqa.json``, in a folder DVC tracks as an input of ``report`` and
``validate``: ``dvc repro`` then puts it in the table and checks it against the paper's
test-dev number (``reference/paper.yaml``), like with like.

The input is the result EvalAI shows for a submission (its "result file"): the evaluation
script's ``result`` list, one ``{split codename: {leaderboard label: value}}`` per split
(EvalAI's documented ``evaluate()`` output), optionally wrapped as ``{"result": [...]}``.
The VQA v2 leaderboard's labels are ``yes/no``, ``number``, ``other`` (``others`` in some
years' configs) and ``overall``, in percent.

Usage: ``python scripts/import_evalai.py RESULT.json [--variant pretrained] [--split test-dev2015]
[--submission results/submissions/vqa.json]``. Only the paper profile's report and validate read
``server_scores/`` (an embedded run has no server score); test2015 (test-std) scores are kept
but neither banded nor tabled: ``reference/paper.yaml`` holds test-dev numbers.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from soho.io import write_text
from soho.sections import FINETUNE_VARIANTS

TASK = "vqa"
SPLITS = {  # EvalAI phase split codename -> the split our VQA results use
    "test-dev": "test-dev2015",
    "test-dev2015": "test-dev2015",
    "test-standard": "test2015",
    "test-std": "test2015",
    "test2015": "test2015",
}
LABELS = {"yes/no": "yes_no", "number": "number", "other": "other", "others": "other", "overall": "overall"}


class ServerScoreError(ValueError):
    """A server result that cannot be read; the message names the file and the field."""


def read_result(path: Path) -> dict[str, dict[str, float]]:
    """``{our split: {metric: value}}`` from an EvalAI result file; every field checked."""
    try:
        document: Any = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ServerScoreError(f"{path}: not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ServerScoreError(f"{path}: not JSON ({err})") from None
    entries = document.get("result") if isinstance(document, dict) else document
    if not isinstance(entries, list) or not entries:
        raise ServerScoreError(
            f"{path}: expected EvalAI's result list [{{split: {{label: value}}}}], got {document!r:.80}"
        )
    scores: dict[str, dict[str, float]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ServerScoreError(
                f"{path}: result[{index}]: expected one {{split: {{label: value}}}}, got {entry!r:.80}"
            )
        ((codename, labels),) = entry.items()
        split = SPLITS.get(codename)
        if split is None:
            raise ServerScoreError(
                f"{path}: result[{index}]: split {codename!r} is not a VQA v2 test split ({', '.join(SPLITS)})"
            )
        if split in scores:
            raise ServerScoreError(f"{path}: result[{index}]: split {codename!r} given twice")
        scores[split] = _metrics(path, f"result[{index}].{codename}", labels)
    return scores


def _metrics(path: Path, where: str, labels: Any) -> dict[str, float]:
    if not isinstance(labels, dict):
        raise ServerScoreError(f"{path}: {where}: expected {{label: value}}, got {labels!r:.80}")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ServerScoreError(f"{path}: {where}: unknown label(s) {unknown} (VQA v2: {', '.join(LABELS)})")
    if "overall" not in labels:
        raise ServerScoreError(f"{path}: {where}: no 'overall' (the number the papers report)")
    if "other" in labels and "others" in labels:
        raise ServerScoreError(f"{path}: {where}: both 'other' and 'others' (one label, two values)")
    metrics = {}
    for label, value in labels.items():
        number = _number(value)
        if number is None or not 0.0 <= number <= 100.0:
            raise ServerScoreError(f"{path}: {where}.{label}: {value!r} is not a percentage in [0, 100]")
        metrics[LABELS[label]] = number
    return metrics


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # EvalAI's leaderboard may hold numbers as strings
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def import_result(
    result: Path,
    server_dir: Path,
    variant: str = "pretrained",
    only: str | None = None,
    submission: Path | None = None,
) -> Path:
    """Merge ``result``'s splits (``only``: just that one) into ``server_dir/vqa.json`` under ``variant``.

    A split already imported is replaced (a newer submission); what the file held for other
    variants and splits stays. The file is written atomically, with each entry's source
    (file name, sha256, time, and the sha256 of the ``submission`` file that was uploaded) in
    ``server_dir/provenance/vqa.json``, so a score cannot outlive its submission unnoticed
    (:func:`stale`).
    """
    if variant not in FINETUNE_VARIANTS:
        raise ServerScoreError(f"--variant {variant!r}: not a fine-tuned variant ({', '.join(FINETUNE_VARIANTS)})")
    scores = read_result(result)
    if only is not None:
        if only not in scores:
            raise ServerScoreError(f"{result}: no {only!r} in it (it has {', '.join(sorted(scores))})")
        scores = {only: scores[only]}
    target = Path(server_dir) / f"{TASK}.json"
    provenance = Path(server_dir) / "provenance" / f"{TASK}.json"
    held = _read_json(target)
    sources = _read_json(provenance)
    digest = hashlib.sha256(Path(result).read_bytes()).hexdigest()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    uploaded = _sha256(submission) if submission is not None else None
    if submission is not None and uploaded is None:
        raise ServerScoreError(f"--submission {submission}: not found (the file uploaded to EvalAI)")
    for split, metrics in scores.items():
        held.setdefault(variant, {})[split] = metrics
        source = {"file": Path(result).name, "sha256": digest, "imported": when}
        if uploaded is not None:
            source |= {"submission": str(submission), "submission_sha256": uploaded}
        sources[f"{variant}/{split}"] = source
    write_text(target, json.dumps(held, indent=1, sort_keys=True) + "\n")
    write_text(provenance, json.dumps(sources, indent=1, sort_keys=True) + "\n")
    return target


def stale(server_dir: Path) -> list[str]:
    """A line per imported score whose submission file has changed (or gone) since the import.

    Why: ``finetune@vqa`` rewrites ``results/submissions/vqa.json`` whenever it re-runs; the
    server's score of the old file must not pass for the new model's.
    """
    lines = []
    for key, source in sorted(_read_json(Path(server_dir) / "provenance" / f"{TASK}.json").items()):
        recorded = source.get("submission_sha256") if isinstance(source, dict) else None
        if recorded is not None and _sha256(Path(source["submission"])) != recorded:
            lines.append(
                f"{Path(server_dir) / f'{TASK}.json'}: {key} scores an earlier {source['submission']} (it changed "
                "since the import): upload the new one and import its result, or delete the entry"
            )
    return lines


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        held = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ServerScoreError(f"{path}: not JSON ({err}); fix or delete it before importing") from None
    if not isinstance(held, dict):
        raise ServerScoreError(f"{path}: expected a mapping, got {type(held).__name__}")
    return held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path, help="the result file EvalAI shows for the submission")
    parser.add_argument(
        "--variant", default="pretrained", help="the fine-tuned variant it scores (default: pretrained)"
    )
    parser.add_argument("--split", choices=sorted(set(SPLITS.values())), help="import only this split")
    parser.add_argument("--server-dir", type=Path, default=Path("server_scores"), help="paths.server_scores")
    parser.add_argument(
        "--submission", type=Path, default=Path("results/submissions/vqa.json"), help="the file uploaded to EvalAI"
    )
    args = parser.parse_args(argv)
    try:
        target = import_result(args.result, args.server_dir, args.variant, args.split, args.submission)
    except ServerScoreError as err:
        print(f"error: {err}")
        return 2
    print(f"{args.result} -> {target} ({args.variant}); `dvc repro` puts it in the table and validates it")
    return 0
