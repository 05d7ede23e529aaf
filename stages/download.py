"""DVC stage `download`: generate (embedded) or fetch and verify (paper) the raw data under raw/."""

import json
import sys

from soho import stage
from soho.data import download
from soho.data.embedded import datasets
from soho.io import write_text


def main(params, args) -> None:
    """Embedded profile: generate the data set in the real formats. Paper: download the manifest."""
    raw = params.paths.raw
    if params.profile == "embedded":
        datasets.generate(raw, params.data, params.seed)
        return
    cfg = params.download
    policy = download.RetryPolicy(cfg.retries, cfg.backoff_s, cfg.max_backoff_s, cfg.timeout_s, cfg.chunk_bytes)
    record = download.fetch_all(download.load_manifest(cfg.manifest), raw, policy)
    write_text(raw / "downloads.json", json.dumps(record, indent=1, sort_keys=True))


if __name__ == "__main__":
    sys.exit(stage.run("download", main))
