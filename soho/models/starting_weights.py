"""Where the paper profile's starting weights come from, and the one-line error when one is missing.

Why a module: the text and the vision encoder each load a local file or folder (nothing is
downloaded at run time), and a user who lacks one needs the exact command that gets it.
"""

from __future__ import annotations

from pathlib import Path

from soho.overrides import ConfigError

# torchvision's ImageNet ResNet-101 (IMAGENET1K_V1, the weights mmdet's ``torchvision://resnet101``,
# which SOHO's backbone starts from, resolves to); the file name carries its SHA-256 prefix
RESNET101_URL = "https://download.pytorch.org/models/resnet101-63fe2227.pth"
# bert-base-uncased on the Hugging Face hub, at the revision seen most often in public caches
BERT_REPO, BERT_REVISION = "google-bert/bert-base-uncased", "86b5e0934494bd15c9632b12f734a8a67f723594"

HOW_TO_GET = {
    "model.vision.weights": (
        "curl -L --create-dirs -o {path} " + RESNET101_URL + " (torchvision's ImageNet ResNet-101; "
        "the 63fe2227 in its name is its SHA-256 prefix: check it with sha256sum)"
    ),
    "model.text.init": (
        f"huggingface-cli download {BERT_REPO} --revision {BERT_REVISION} --local-dir {{path}} "
        "(bert-base-uncased at a pinned revision)"
    ),
}


def missing(key: str, path: Path, what: str) -> ConfigError:
    """The error for a starting weight that is not on disk: the key, the path, and the command that fetches it."""
    return ConfigError(f"{key}: {path} {what}; get it with: {HOW_TO_GET[key].format(path=path)}")
