"""DVC stage `shard`: raw/ -> WebDataset tars under shards/<dataset>/, stats in shards/stats.json.

The stats also go to the stage's MLflow run, keyed by their path in stats.json
(``shard/datasets/coco/train/samples``, ``shard/total/bad``), with stats.json as an artifact.
"""

import json
import logging
import sys
from pathlib import Path

from soho import stage
from soho.data import shards


def main(params, args) -> None:
    """Write the shards of every configured data set; fail when too many samples are bad."""
    cfg = params.shard
    summary = shards.write_all(
        cfg.datasets, params.paths.raw, params.paths.shards, cfg.max_samples_per_shard, cfg.max_bad_fraction
    )
    logging.getLogger("shard").info("wrote %s", json.dumps(summary["total"]))
    args.kit.log_metrics("shard", summary)
    args.kit.log_artifact(Path(params.paths.shards) / "stats.json")


if __name__ == "__main__":
    sys.exit(stage.run("shard", main))
