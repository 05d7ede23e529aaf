"""DVC stage `report`: results/*.json (+ server_scores/*.json) + reference/ -> results/table.{json,md}; logged to MLflow.

The README embeds ``results/table.md`` between markers, rewritten here too, so the table
a reader sees is always the generated one.
"""

import datetime
import json
import re
import sys
from pathlib import Path

from soho import paper_numbers, report, stage, tracking
from soho.eval import evalai
from soho.io import write_text

README_START, README_END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def embed_in_readme(readme: Path, table_md: str) -> None:
    """Replace the text between the README's table markers (if both are there)."""
    if not readme.exists():
        return
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return
    body = table_md.replace("# SOHO results", "### Results table (generated)", 1).replace("\n## ", "\n#### ")
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    write_text(readme, pattern.sub(lambda _: f"{README_START}\n{body}{README_END}", text))


def main(params, args) -> None:
    """Build the results table from the metrics files and the papers' reported numbers."""
    results = Path(params.paths.results)
    header = {
        "profile": params.profile,
        "commit": tracking.git_commit()[:12],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    runs = report.load_runs(Path(args.runs)) if params.profile == "embedded" else {}
    server = Path(params.paths.server_scores) if params.profile == "paper" else None  # EvalAI scores a paper run
    for line in evalai.stale(server) if server is not None else ():
        print(f"report: {line}; the table leaves the server's scores out")
        server = None
    metrics = report.load_results(results, server)
    table = report.build(metrics, paper_numbers.load(Path(args.reference)), header, runs)
    markdown = report.render_markdown(table)
    write_text(results / "table.json", json.dumps(table, indent=1))
    write_text(results / "table.md", markdown)
    if args.readme:
        embed_in_readme(Path(args.readme), markdown)
    for path in (results / "table.md", results / "table.json"):
        args.kit.log_artifact(path)


def add_args(parser) -> None:
    parser.add_argument("--reference", default="reference/paper.yaml", help="the papers' reported numbers")
    parser.add_argument("--runs", default="reference/runs", help="reference runs (embedded profile): their spread")
    parser.add_argument("--readme", default="README.md", help="README to embed the table in ('' = none)")


if __name__ == "__main__":
    sys.exit(stage.run("report", main, add_args))
