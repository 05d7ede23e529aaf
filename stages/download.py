"""DVC stage `download`: generate (embedded) or fetch and verify (paper) the raw data under raw/.

The stage's MLflow run records where the data came from (tag ``download.source``) and how much:
embedded, ``download/files`` and ``download/bytes`` under raw/; paper, ``download/sources`` and
``download/bytes`` fetched, with ``downloads.json`` as an artifact.
"""

import json
import sys
from pathlib import Path

from soho import stage
from soho.data import download
from soho.data.embedded import datasets
from soho.io import write_text


def tree_size(folder: Path) -> dict[str, int]:
    files = [path for path in Path(folder).rglob("*") if path.is_file()]
    return {"files": len(files), "bytes": sum(path.stat().st_size for path in files)}


def main(params, args) -> None:
    """Embedded profile: generate the data set in the real formats. Paper: download the manifest."""
    raw = params.paths.raw
    if params.profile == "embedded":
        datasets.generate(raw, params.data, params.seed)
        args.kit.set_tags({"download.source": "generated"})
        args.kit.log_metrics("download", tree_size(raw))
        return
    cfg = params.download
    policy = download.RetryPolicy(cfg.retries, cfg.backoff_s, cfg.max_backoff_s, cfg.timeout_s, cfg.chunk_bytes)
    record = download.fetch_all(download.load_manifest(cfg.manifest), raw, policy)
    write_text(raw / "downloads.json", json.dumps(record, indent=1, sort_keys=True))
    args.kit.set_tags({"download.source": str(cfg.manifest)})
    args.kit.log_metrics("download", {"sources": len(record), "bytes": sum(e["size"] for e in record.values())})
    args.kit.log_artifact(raw / "downloads.json")


if __name__ == "__main__":
    sys.exit(stage.run("download", main))
