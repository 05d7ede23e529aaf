"""The starting weights fetched like data (issue 16, 6): torchvision's file with its hash prefix checked,
bert-base-uncased through huggingface_hub at the pinned revision, both from loopback servers."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import torchvision

from soho.config import ModelParams, TextParams, VisionParams
from soho.data import weights
from soho.data.download import DownloadError, RetryPolicy
from soho.models.fusion import load_tokenizer, resolve_text_model
from soho.models.starting_weights import BERT_REPO, BERT_REVISION
from soho.models.vision import build_resnet

from ..support.http_server import FixtureServer
from ..support.hub_server import HubServer

pytestmark = pytest.mark.network
FAST = RetryPolicy(retries=2, backoff_s=0.01, max_backoff_s=0.05, timeout_s=10, chunk_bytes=1 << 16)


@pytest.fixture
def online(monkeypatch):
    """The test environment sets HF_HUB_OFFLINE=1 (nothing may reach a hub); these tests reach a loopback one."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def resnet18_file() -> tuple[bytes, str]:
    """A torchvision resnet18 state dict (random init: the real file is 45 MB of ImageNet weights) and its sha256."""
    buffer = io.BytesIO()
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), buffer)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def test_torchvisions_file_is_fetched_resumably_its_hash_prefix_checked_and_loads(tmp_path, monkeypatch):
    data, sha = resnet18_file()
    real_name = weights.torchvision_file("resnet18")
    assert real_name == "resnet18-f37072fd.pth" and weights.hash_prefix(real_name) == "f37072fd"
    model = ModelParams(vision=VisionParams(arch="resnet18", weights=tmp_path / "weights" / "resnet18.pth"))
    with FixtureServer({f"/models/{real_name}": data}) as server:
        # under its real name the fixture's hash is not torchvision's: refused, nothing left behind
        with pytest.raises(DownloadError, match=r"resnet18-f37072fd\.pth: SHA-256 \w+ does not start with f37072fd"):
            weights.fetch_all(model, tmp_path / "weights", FAST, f"{server.url}/models", "http://unused")
        assert not model.vision.weights.exists()
        # under a name carrying its own prefix (as torchvision's do) it is fetched, even after a cut
        own_name = f"resnet18-{sha[:8]}.pth"
        server.files[f"/models/{own_name}"] = data
        server.cut_after[f"/models/{own_name}"] = len(data) // 3
        monkeypatch.setattr(weights, "torchvision_file", lambda arch: own_name)
        record = weights.fetch_all(model, tmp_path / "weights", FAST, f"{server.url}/models", "http://unused")
    assert record["model.vision.weights"]["sha256"] == sha
    assert (tmp_path / "weights" / weights.RECORD).is_file()
    build_resnet("resnet18", None, model.vision.weights)  # torchvision's state dict, loaded strictly


def bert_files(tmp_path: Path) -> dict[str, bytes]:
    """A 1-layer BERT in bert-base-uncased's file names, with MiniLM's uncased word pieces."""
    from transformers import BertConfig, BertForPreTraining

    minilm = resolve_text_model("minilm")
    folder = tmp_path / "fixture-bert"
    config = BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    BertForPreTraining(config).save_pretrained(folder, safe_serialization=True)
    files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        files[name] = (minilm / name).read_bytes()
    files["pytorch_model.bin"] = b"not asked for"  # the hub's other formats are not downloaded
    return files


def test_bert_comes_from_the_hub_at_the_pinned_revision_only_its_needed_files(tmp_path, online):
    files = bert_files(tmp_path)
    model = ModelParams(text=TextParams(init=str(tmp_path / "weights" / "bert-base-uncased")))
    with HubServer(BERT_REPO, BERT_REVISION, files) as hub:
        record = weights.fetch_all(model, tmp_path / "weights", FAST, "http://unused", hub.url)
        asked = list(hub.requests)
        again = weights.fetch_all(model, tmp_path / "weights", FAST, "http://unused", hub.url)
        assert hub.requests == asked  # recorded at the pinned revision: the hub is not asked again
    assert record == again == {"model.text.init": {"repo": BERT_REPO, "revision": BERT_REVISION, "endpoint": hub.url}}
    assert f"/api/models/{BERT_REPO}/revision/{BERT_REVISION}" in [path for _, path in asked]
    folder = Path(model.text.init)
    assert (folder / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert not (folder / "pytorch_model.bin").exists()
    assert load_tokenizer(model.text.init)("a red circle")["input_ids"][0] == 101  # [CLS]


def test_a_hub_without_the_pinned_revision_is_one_line_naming_repo_and_revision(tmp_path, online):
    model = ModelParams(text=TextParams(init=str(tmp_path / "bert")))
    hub = HubServer(BERT_REPO, "0" * 40, {"config.json": b"{}"})
    with hub, pytest.raises(DownloadError, match=rf"{BERT_REPO}@{BERT_REVISION} from {hub.url}: ") as err:
        weights.fetch_all(model, tmp_path / "weights", FAST, "http://unused", hub.url)
    assert "\n" not in str(err.value)


def test_the_embedded_profile_fetches_nothing_and_records_that(tmp_path):
    assert weights.fetch_all(ModelParams(), tmp_path / "weights", FAST, "http://unused", "http://unused") == {}
    assert (tmp_path / "weights" / weights.RECORD).read_text() == "{}\n"
