"""The pre-training fingerprint covers the code DVC re-runs `pretrain` for, and nothing less."""

from pathlib import Path

import yaml

from soho.train.variants import PRETRAIN_CODE

ROOT = Path(__file__).resolve().parents[2]


def test_the_fingerprint_hashes_every_soho_dependency_of_the_pretrain_stages():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("pretrain", "pretrain_scl"):
        code = {dep.removeprefix("soho/") for dep in stages[name]["deps"] if dep.startswith("soho/")}
        assert code == set(PRETRAIN_CODE), f"dvc.yaml {name} deps and PRETRAIN_CODE differ: {code ^ set(PRETRAIN_CODE)}"
