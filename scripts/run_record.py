"""What scripts/seed_run.sh records of a reference run: its parameter overrides and file digests.

Why one module: the whole run and a ``--tasks`` rerun both record the overrides, and both
check kept weights by digest; two copies of either had begun to drift (a whole-section
``SOHO_FINETUNE='{...}'`` went unrecorded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

SET_BY_SEED_RUN = {"SOHO_SEED"}  # the run's seed: run.json records it as "seed"


def recorded_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The parameters set over params.yaml from the environment, as the stages read them (whole sections too)."""
    from soho.config import Params
    from soho.overrides import env_overrides

    found = env_overrides(environ, Params)  # refuses an unknown section or key, naming the variable
    return {o.variable: environ[o.variable] for o in found if o.variable.upper() not in SET_BY_SEED_RUN}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), as run.json records it."""
    import platform

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor()
    )


def with_variant(recorded: dict, rerun: dict, variant: str, source: str) -> dict:
    """A task's recorded results with ``variant``'s entry from a rerun of that variant alone.

    Why the check: the other variants stand only if the evaluation is the same one; chance, which
    needs no model, shows that it is (the same splits, examples and seed). ``source`` names the file.
    """
    if recorded.get("chance") != rerun.get("chance"):
        raise SystemExit(f"error: {source}: chance differs from the rerun's: not the same evaluation")
    if variant not in rerun:
        raise SystemExit(f"error: {source}: the rerun has no {variant!r} entry (it has {', '.join(sorted(rerun))})")
    return recorded | {variant: rerun[variant]}
