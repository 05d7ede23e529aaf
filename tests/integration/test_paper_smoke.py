"""The paper profile's whole pipeline at paper architecture sizes, on fixture archives (issue 16, 5).

ResNet-101 on 600 x 1000 keep-ratio inputs, a 12-layer BERT-base (random initialisation, served by
a loopback hub) and a 2048-entry VD, as ``profiles/paper.yaml`` has them. Only the data volume
and the step counts are cut: every ``dvc.yaml`` stage runs its own command, from ``download``
(fixture archives in the real names and layouts, from a loopback server and the manual
folder) to ``validate`` against ``reference/paper.yaml``, and writes every output ``dvc.yaml``
declares. One step of batch 2 learns nothing, so validate must fail on the bands, and say so.

Why not ``dvc repro``: the cuts are ``SOHO_*`` overrides, which a stage refuses under DVC
(DVC would not record them); the commands and outputs are DVC's own reading of ``dvc.yaml``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soho.config import load_params
from soho.models.fusion import resolve_text_model
from soho.models.starting_weights import BERT_REPO, BERT_REVISION

from ..conftest import REPO
from ..support import paper_archives
from ..support.http_server import FixtureServer
from ..support.hub_server import HubServer

pytestmark = [pytest.mark.slow, pytest.mark.network]
PATH_ROOTS = ("raw", "shards", "weights", "checkpoints", "results", "server_scores")  # params.paths, under work/
CUT_STEPS = 1  # one optimiser step per stage: the stages and their outputs, not learning, are under test


def bert_base_files(folder: Path) -> dict[str, bytes]:
    """bert-base-uncased's files at its real size, randomly initialised (nothing comes from a hub).

    The word pieces are MiniLM's, which are bert-base-uncased's.
    """
    import torch
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    BertForPreTraining(BertConfig()).save_pretrained(folder, safe_serialization=True)  # 12 x 768, 30,522 pieces
    files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    minilm = resolve_text_model("minilm")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        files[name] = (minilm / name).read_bytes()
    return files


def stages() -> list[tuple[str, str, list[str]]]:
    """(name, command, declared outputs) of every root ``dvc.yaml`` stage in file order, as DVC expands them."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:  # DVC's own parser: ``foreach`` and ``${...}`` resolved, metrics and plots in outs
        return [
            (s.name, s.cmd, [o.def_path for o in s.outs]) for s in repo.index.stages if s.path_in_repo == "dvc.yaml"
        ]


def per_task_settings() -> dict[str, dict]:
    """The paper profile's ``finetune.tasks`` without their schedules (VQA's multi-scale sizes, MSR-VTT's 1k-A split)."""
    tasks = load_params(REPO / "params.yaml", "paper").finetune.tasks
    kept = {task: {k: v for k, v in settings.items() if k != "optim"} for task, settings in tasks.items()}
    assert kept["vqa"]["train_scales"] == [400, 800] and kept["retrieval_msrvtt"]["msrvtt_split"] == "1k-A"
    return {task: settings for task, settings in kept.items() if settings}


def smoke_environment(work: Path, manifest: Path, hub: str) -> dict[str, str]:
    """The paper profile with only data volume and step counts cut (and the outputs under ``work``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHO_")}
    env |= {f"SOHO_PATHS__{root.upper()}": str(work / root) for root in PATH_ROOTS}
    optim = {"steps": CUT_STEPS, "batch_size": 2, "global_batch": None, "warmup_steps": 0}
    optim |= {"num_workers": 0, "log_every": 1, "checkpoint_every": 0, "shuffle_buffer": 8}
    env |= {
        "SOHO_PROFILE": "paper",
        "SOHO_DOWNLOAD__MANIFEST": str(manifest),
        "SOHO_DOWNLOAD__HUB_ENDPOINT": hub,
        "SOHO_DOWNLOAD__BACKOFF_S": "0.1",
        "SOHO_MODEL__VISION__WEIGHTS": "null",  # random ResNet-101: torchvision's ImageNet file is 171 MB
        "SOHO_MODEL__TEXT__INIT": str(work / "weights" / "bert-base-uncased"),
        "SOHO_PRETRAIN__EVAL_SAMPLES": "4",
        "SOHO_PRETRAIN__OPTIM": json.dumps(optim),
        "SOHO_FINETUNE__OPTIM": json.dumps(optim),
        "SOHO_FINETUNE__TASKS": json.dumps(per_task_settings()),
        "SOHO_FINETUNE__VARIANTS": json.dumps(["pretrained"]),
        "SOHO_FINETUNE__EVAL_BATCH_SIZE": "2",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    return env


def output_path(work: Path, declared: str) -> Path:
    root, _, rest = declared.partition("/")
    assert root in PATH_ROOTS, f"dvc.yaml output {declared} is under no params.paths root"
    return work / root / rest if rest else work / root


def test_the_paper_profile_runs_every_stage_at_paper_sizes(tmp_path):
    work = tmp_path / "work"
    with FixtureServer({}) as data:
        served, manifest = paper_archives.build(REPO / "soho/data/manifests/paper.yaml", work, data.url)
        data.files.update(served)
        with HubServer(BERT_REPO, BERT_REVISION, bert_base_files(tmp_path / "bert-base")) as hub:
            env = smoke_environment(work, manifest, hub.url)
            readme = work / "README.md"  # report embeds its table here, not in the repository's README
            readme.write_bytes((REPO / "README.md").read_bytes())
            timings = {}
            for name, command, outs in stages():
                if name == "report":
                    command += f" --readme {readme}"
                stage_env = dict(env)
                if name == "weights":  # the only stage that may reach a hub: the loopback one
                    del stage_env["HF_HUB_OFFLINE"], stage_env["TRANSFORMERS_OFFLINE"]  # huggingface_hub reads both
                start = time.monotonic()
                done = subprocess.run(
                    [sys.executable, *command.split()[1:]], cwd=REPO, env=stage_env, capture_output=True, text=True
                )
                timings[name] = round(time.monotonic() - start, 1)
                if name == "validate":
                    # one step of batch 2 is not the paper's numbers: the bands must catch that
                    assert done.returncode == 1, done.stdout + done.stderr
                    assert "metrics outside their band (paper profile)" in done.stdout, done.stdout
                    assert "vqa/pretrained/test-dev2015/overall is not checked here" in done.stdout, done.stdout
                else:
                    assert done.returncode == 0, f"{name}: {done.stdout[-3000:]}\n{done.stderr[-5000:]}"
                missing = [out for out in outs if not output_path(work, out).exists()]
                assert not missing, f"{name} did not write {missing}"
    print("paper smoke, seconds per stage:", json.dumps(timings))
    sources = json.loads((work / "weights" / "sources.json").read_text())
    assert sources["model.text.init"] == {"repo": BERT_REPO, "revision": BERT_REVISION, "endpoint": hub.url}
    config = json.loads((work / "weights" / "bert-base-uncased" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (12, 768)
    stats = json.loads((work / "shards" / "stats.json").read_text())
    assert stats, "shard wrote no statistics"
    submission = json.loads((work / "results" / "submissions" / "vqa.json").read_text())
    assert submission and set(submission[0]) == {"question_id", "answer"}  # EvalAI's test-dev format
    pretrain = json.loads((work / "results" / "pretrain.json").read_text())
    assert pretrain["heldout_pairs"] > 0
    assert "Profile **paper**" in readme.read_text()
