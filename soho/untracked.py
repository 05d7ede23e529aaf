"""Under DVC, refuse the settings DVC does not record: ``SOHO_*`` parameter overrides.

Why: DVC records a stage's parameters from ``params.yaml`` (the keys under ``params:`` in
``dvc.yaml``), never from the environment. Run by ``dvc repro`` with
``SOHO_PRETRAIN__OPTIM__STEPS=30``, ``pretrain`` was locked as ``steps: 200``, and ``dvc status``
(and DVC's run cache) then took the 30-step model for the 200-step one. So a stage that DVC
runs takes its parameters from the files alone. A variable that would change them stops it
before any work, in one line that says where DVC does see the value: ``dvc exp run -S``
(DVC's way to set a parameter, written to ``params.yaml``) or the file itself, where ``-S``
cannot say the same thing. Run directly (``python stages/x.py``), a stage takes every override.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from soho.overrides import ConfigError, EnvOverride, child, is_section

# DVC 3 sets it for every stage command it runs, `dvc repro` and `dvc exp run` alike
# (dvc/stage/run.py: prepare_kwargs, to the stage's address: pretrain, finetune@vqa).
DVC_STAGE = "DVC_STAGE"
PROFILE_ENV = "SOHO_PROFILE"
_MISSING = object()


def _lookup(data: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _leaves(model: type[BaseModel], override: EnvOverride) -> list[tuple[tuple[str, ...], Any, Any]]:
    """``(path, value, type)`` per parameter ``override`` sets: a section given JSON sets each key it names."""
    annotation: Any = model
    for part in override.path:
        annotation = child(annotation, part)
    found, todo = [], [(override.path, override.value, annotation)]
    while todo:
        path, value, annotation = todo.pop(0)
        if is_section(annotation) and isinstance(value, dict):
            todo.extend((path + (key,), item, child(annotation, key)) for key, item in value.items())
        else:
            found.append((path, value, annotation))
    return found


def _overlay_sets(model: type[BaseModel], overlay: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether the profile overlay decides ``path``: it sets the key, or a value (not a section) above it."""
    annotation: Any = model
    for depth, part in enumerate(path):
        annotation = child(annotation, part)
        node = _lookup(overlay, path[: depth + 1])
        if node is _MISSING:
            return False
        if depth == len(path) - 1 or not is_section(annotation):
            return True
    return False


def _typed(value: Any, annotation: Any) -> Any:
    """A variable's text as the parameter's type reads it (pydantic's rule): ``-S`` must write ``30``, not ``'30'``.

    Lists, mappings and values of no declared type arrive parsed already (JSON).
    """
    if not isinstance(value, str) or annotation is Any:
        return value
    try:
        typed = TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        return value  # refused when the parameters load, with the key and the reason
    return str(typed) if isinstance(typed, PurePath) else typed


def _hydra_value(value: Any) -> str:
    """``value`` in the override grammar ``dvc exp run -S`` parses (Hydra's, which DVC uses).

    A string is quoted where Hydra would read it otherwise: ``"2024"``, ``"null"``, ``"a, b"``.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Override, OverrideType, Quote, QuotedString, ValueType

    parser = OverridesParser.create()

    def element(item: Any) -> Any:
        if isinstance(item, list | tuple):
            return [element(inner) for inner in item]
        if isinstance(item, dict):
            return {key: element(inner) for key, inner in item.items()}
        if isinstance(item, str) and not (
            re.fullmatch(r"[\w./+-]+", item) and parser.parse_override(f"key={item}").value() == item
        ):
            quote = Quote.single if '"' in item and "'" not in item else Quote.double  # `-S '...'` for the shell
            return QuotedString(text=item, quote=quote)
        return item

    override = Override(OverrideType.CHANGE, "key", ValueType.ELEMENT, _value=element(value))
    return override.get_value_element_as_str(space_after_sep=True)


def _where(
    model: type[BaseModel], leaf: tuple[tuple[str, ...], Any, Any], files: Mapping[str, dict[str, Any]]
) -> tuple[str | None, str]:
    """``(None, "-S key=value")`` when ``dvc exp run -S`` gives what the variable gave, else ``(file, key)``.

    ``files`` is the parameter file, then the profile overlay (by name). ``-S`` writes the
    parameter file, under the overlay, and merges a mapping where the variable replaces it:
    those keys are set in a file instead.
    """
    (path, value, annotation), dotted = leaf, ".".join(leaf[0])
    (in_file_name, in_file), (overlay_name, overlay) = files.items()
    if _overlay_sets(model, overlay, path):
        return overlay_name, dotted
    existing = _lookup(in_file, path)
    if isinstance(value, dict) and not is_section(annotation) and existing not in (_MISSING, {}):
        return in_file_name, dotted
    prefix = "++" if existing in (_MISSING, {}) else ""  # Hydra: `++` adds a key the file lacks
    return None, "-S " + shlex.quote(f"{prefix}{dotted}={_hydra_value(_typed(value, annotation))}")


def refuse_untracked(
    environ: Mapping[str, str],
    overrides: Sequence[EnvOverride],
    model: type[BaseModel],
    *,
    tracked_profile: str,
    files: Mapping[str, dict[str, Any]],
) -> None:
    """A :class:`ConfigError` when DVC runs this stage and ``overrides`` or ``SOHO_PROFILE`` change what it records.

    ``tracked_profile`` is the profile of the file and the command (``--profile``), which DVC
    records. ``files``: the parameter file as read, then the profile overlay merged over it
    (``{}`` for ``embedded``), each by its name in the message.
    """
    stage = environ.get(DVC_STAGE)
    if not stage:
        return
    given = list(overrides)
    profile = environ.get(PROFILE_ENV)
    if profile and profile != tracked_profile:
        given.insert(0, EnvOverride(PROFILE_ENV, ("profile",), profile))
    if not given:
        return
    sets, edits = [], {}
    for override in given:
        for leaf in _leaves(model, override):
            file, what = _where(model, leaf, files)
            if file is None:
                sets.append(what)
            else:
                edits.setdefault(file, []).append(what)
    steps = [f"set {', '.join(keys)} in {file}" for file, keys in edits.items()]
    steps.append(f"run dvc exp run {' '.join(sets)}" if sets else "run dvc repro")
    variables = ", ".join(override.variable for override in given)
    them = "it" if len(given) == 1 else "them"
    raise ConfigError(
        f"environment: {variables}: DVC runs this stage ({stage}) and records its parameters from "
        f"{next(iter(files))}, not the environment, so dvc.lock and dvc status would not see {them}; "
        f"unset {them}, then {', then '.join(steps)}"
    )
