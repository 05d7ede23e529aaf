"""How overrides land on ``params.yaml``: ``SOHO_*`` variables, the profile overlay, dotted keys.

Why one module: the environment, ``profiles/<profile>.yaml``, the ``ablations.runs`` rows and
``pretrain_scl.overrides`` all put values over the file, and they must do it one way. A value
(a number, a list such as ``finetune.variants``, a mapping such as ``ablations.runs``) replaces
the file's value entirely; a section (a typed model such as ``pretrain.optim``) takes the keys
given and keeps the others. The types are walked along each variable's name, so an unknown
section or key is refused where it is read, naming the variable.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel

PREFIX, DELIMITER = "SOHO_", "__"  # SOHO_<SECTION>__<KEY>

# The SOHO_* variables that are not parameter overrides, and what reads each.
NOT_PARAMETERS = {
    "SOHO_PROFILE": "the profile: soho.config.load_params (resolve_profile), with --profile; under DVC, only the file's",
    "SOHO_PIPELINE_ID": "the MLflow pipeline id: soho.stage, set by scripts/pipeline.sh and scripts/test.sh",
    "SOHO_SKIP_PIPELINE": "scripts/test.sh: 1 stops after the test suite",
}


class ConfigError(ValueError):
    """A parameter is missing, unknown, of the wrong type or impossible."""


@dataclass(frozen=True)
class EnvOverride:
    """One ``SOHO_*`` variable: its name, the parameter it sets (``path``) and the value (JSON parsed)."""

    variable: str
    path: tuple[str, ...]
    value: Any


def is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def child(annotation: Any, key: str) -> Any:
    """The type under ``key`` (``Any`` where the types say nothing: an unknown key, inside ``Any``)."""
    if is_section(annotation):
        field = annotation.model_fields.get(key)
        return Any if field is None else field.annotation
    if get_origin(annotation) is dict:
        return get_args(annotation)[1]
    return Any


def _checked_path(model: type[BaseModel], path: tuple[str, ...], variable: str) -> Any:
    """The type of the parameter ``variable`` names; a :class:`ConfigError` for an unknown name."""
    annotation: Any = model
    for depth, part in enumerate(path):
        where = ".".join(path[:depth])
        if is_section(annotation) and part not in annotation.model_fields:
            known = ", ".join(sorted(set(annotation.model_fields) - {"profile"}))
            if depth == 0:
                others = ", ".join(sorted(NOT_PARAMETERS))
                raise ConfigError(
                    f"environment: {variable}: unknown section {part!r}; known: {known} "
                    f"(SOHO_<SECTION>__<KEY>; SOHO_* variables that are not parameters: {others})"
                )
            raise ConfigError(f"environment: {variable}: unknown key {where}.{part}; {where} has {known}")
        if not (is_section(annotation) or get_origin(annotation) is dict or annotation is Any):
            raise ConfigError(f"environment: {variable}: {where} is a value, not a section (it has no key {part!r})")
        annotation = child(annotation, part)
    return annotation


def _json_kind(annotation: Any) -> str | None:
    if is_section(annotation) or get_origin(annotation) is dict:
        return "object"
    if get_origin(annotation) in (tuple, list, set, frozenset):
        return "list"
    return None


def _allows_none(annotation: Any) -> bool:
    return annotation is None or type(None) in get_args(annotation)


def _value(variable: str, path: tuple[str, ...], text: str, annotation: Any) -> Any:
    """Lists, mappings and sections are JSON; other values stay text (pydantic converts them).

    ``null`` unsets a value that may be unset, as in ``params.yaml`` (``SOHO_MODEL__VISION__WEIGHTS=null``:
    a random CNN); left as text it would become the path ``null``.
    """
    kind = _json_kind(annotation)
    if kind is None and annotation is not Any:
        return None if text == "null" and _allows_none(annotation) else text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if kind is None:
            return text  # free-form (inside a mapping of Any): a plain string
        example = json.dumps([item.strip() for item in text.split(",")]) if kind == "list" else '{"key": value}'
        raise ConfigError(
            f"environment: {variable}: not valid JSON ({text!r}); {'.'.join(path)} takes a JSON {kind}, "
            f"e.g. {variable}='{example}'"
        ) from None


def env_overrides(environ: Mapping[str, str], model: type[BaseModel]) -> list[EnvOverride]:
    """The parameter overrides among ``environ``'s ``SOHO_*`` variables, the shallowest first.

    Names are case-insensitive, as pydantic-settings reads them; ``NOT_PARAMETERS`` are left out.
    """
    found = []
    for name, text in sorted(environ.items()):
        if not name.upper().startswith(PREFIX) or name.upper() in NOT_PARAMETERS:
            continue
        path = tuple(name[len(PREFIX) :].lower().split(DELIMITER))
        found.append(EnvOverride(name, path, _value(name, path, text, _checked_path(model, path, name))))
    return sorted(found, key=lambda override: len(override.path))


def put(model: Any, data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``path`` in ``data`` (parameters of type ``model``) to ``value``, in place.

    A section given a mapping takes its keys one by one (each by this rule); anything else,
    lists and mappings included, replaces what was there.
    """
    node, annotation = data, model
    for part in path[:-1]:
        annotation = child(annotation, part)
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    leaf, annotation = path[-1], child(annotation, path[-1])
    if is_section(annotation) and isinstance(value, dict) and isinstance(node.get(leaf), dict):
        for key, item in value.items():
            put(annotation, node[leaf], (key,), item)
    else:
        node[leaf] = copy.deepcopy(value)


def merge(model: type[BaseModel], base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` over a copy of ``base`` by the rule of :func:`put` (the profile overlay)."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        put(model, merged, (key,), value)
    return merged
