"""DVC stage `shard`: raw/ -> WebDataset tars under shards/<dataset>/, stats in shards/stats.json."""

import json
import logging
import sys

from soho import stage
from soho.data import shards


def main(params, args) -> None:
    """Write the shards of every configured data set; fail when too many samples are bad."""
    cfg = params.shard
    summary = shards.write_all(
        cfg.datasets, params.paths.raw, params.paths.shards, cfg.max_samples_per_shard, cfg.max_bad_fraction
    )
    logging.getLogger("shard").info("wrote %s", json.dumps(summary["total"]))


if __name__ == "__main__":
    sys.exit(stage.run("shard", main))
