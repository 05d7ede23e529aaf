"""Typed configuration mirroring ``params.yaml``.

Why: every stage reads the same file, so a typo or an impossible value must fail
before any work starts, naming the dotted key and the reason. The profile
(one of ``PROFILES``) is resolved once, by :func:`resolve_profile`; the paper profile is an
overlay file (``profiles/paper.yaml``) merged over ``params.yaml``. Environment variables
``SOHO_<SECTION>__<KEY>`` override both (e.g. ``SOHO_SHARD__MAX_BAD_FRACTION=0.1``), by the
rule of :mod:`soho.overrides` (an unknown section or key is refused; a list or mapping replaces
the file's), except in a stage DVC runs, where DVC would not record them (:mod:`soho.untracked`).
Every override the pipeline applies later (each ``ablations.runs`` row, the
``pretrain_scl.overrides``) is tried when the parameters load, so a bad one fails before any work.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from soho import untracked
from soho.overrides import NOT_PARAMETERS, ConfigError, EnvOverride, env_overrides, merge, put  # noqa: F401
from soho.sections import (  # noqa: F401  (re-exported: soho.config is where callers find every section)
    FINETUNE_VARIANTS,
    AblationParams,
    BackboneParams,
    Download,
    FinetuneParams,
    ModelParams,
    ObjectiveParams,
    OptimParams,
    Paths,
    PretrainParams,
    PretrainSclParams,
    Section,
    Shard,
    SplitSizes,
    SyntheticData,
    TextParams,
    VdParams,
    VisionParams,
)

PROFILES = ("embedded", "paper")  # the one list: Params.profile, stage.run's --profile, load_params
_READ_ENV: ContextVar[bool] = ContextVar("soho_read_env", default=True)  # False: the caller applied it


class Params(BaseSettings):
    """The whole of ``params.yaml`` (after the profile overlay), plus ``SOHO_*`` env overrides."""

    model_config = SettingsConfigDict(env_prefix="SOHO_", env_nested_delimiter="__", extra="forbid", frozen=True)

    profile: Literal[PROFILES] = "embedded"
    seed: int = Field(default=0, ge=0)
    paths: Paths = Paths()
    data: SyntheticData = SyntheticData()
    download: Download = Download()
    shard: Shard = Shard()
    model: ModelParams = ModelParams()
    backbone: BackboneParams = BackboneParams()
    pretrain: PretrainParams = PretrainParams()
    finetune: FinetuneParams = FinetuneParams()
    ablations: AblationParams = AblationParams()
    pretrain_scl: PretrainSclParams = PretrainSclParams()

    @model_validator(mode="after")
    def _pretrain_data_is_sharded(self) -> Params:
        missing = sorted(set(self.pretrain.datasets) - set(self.shard.datasets))
        if missing:
            raise ValueError(f"pretrain.datasets: {missing} are not in shard.datasets")
        if self.finetune.video_frames > self.model.vision.max_frames:
            raise ValueError(
                f"finetune.video_frames: {self.finetune.video_frames} exceeds model.vision.max_frames="
                f"{self.model.vision.max_frames} (the temporal position embedding has that many rows)"
            )
        self._multi_scale_keeps_the_ratio()
        return self

    def _multi_scale_keeps_the_ratio(self) -> None:
        for task in (None, *self.finetune.tasks):
            settings = self.finetune if task is None else self.finetune.for_task(task)
            if settings.train_scales is None:
                continue
            where = "finetune" if task is None else f"finetune.tasks.{task}"
            if self.model.vision.resize != "keep_ratio":
                raise ValueError(
                    f"{where}.train_scales: {list(settings.train_scales)} needs model.vision.resize: keep_ratio "
                    f"(got {self.model.vision.resize}: square images have one size)"
                )
            if settings.train_max_long_side < settings.train_scales[1]:
                raise ValueError(
                    f"{where}.train_max_long_side: {settings.train_max_long_side} is below the largest short side "
                    f"{settings.train_scales[1]} of train_scales"
                )
            cells = -(-settings.train_max_long_side // 32)  # stride 32, padded to a multiple of 32
            if cells > self.model.vision.max_grid:
                raise ValueError(
                    f"{where}.train_max_long_side: {settings.train_max_long_side} px gives {cells} grid cells, above "
                    f"model.vision.max_grid {self.model.vision.max_grid}"
                )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML files, which arrive as init kwargs.
        return _Environment(settings_cls), init_settings


class _Environment(PydanticBaseSettingsSource):
    """``SOHO_*`` overrides for a bare ``Params()`` (:func:`load_params` applies them itself).

    Read by :func:`soho.overrides.env_overrides`, so ``SOHO_PROFILE`` is left out (the profile
    also picks the overlay file, so :func:`load_params` resolves it in one place) and an
    unknown section or a list that is not JSON is a :class:`ConfigError` naming the variable.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if _READ_ENV.get():
            for override in env_overrides(os.environ, Params):
                put(Params, data, override.path, override.value)
        return data


def read_yaml(path: Path, what: str = "parameter file") -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: {what} not found") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def _validated(data: dict[str, Any], source: str, env: Sequence[EnvOverride] = ()) -> Params:
    """``Params`` from ``data`` alone: the environment is in ``data`` already (or must not be)."""
    token = _READ_ENV.set(False)
    try:
        return Params(**data)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err, env)) from None
    finally:
        _READ_ENV.reset(token)


def _involves(override: EnvOverride, loc: tuple[str, ...], msg: str) -> bool:
    """Whether the error at ``loc`` comes from ``override``: inside its value, or a check naming it."""
    path = override.path
    if loc[: len(path)] == path:
        return True
    if path[: len(loc)] == loc and re.search(rf"\b{re.escape(path[len(loc)])}\b", msg):
        return True
    return len(path) > 1 and ".".join(path) in msg


def _format_errors(source: str, err: ValidationError, env: Sequence[EnvOverride] = ()) -> str:
    """One line per error, ``key (VARIABLE): reason (got value)``; the header says where they came from."""
    lines, from_env = [], 0
    for item in err.errors():
        loc, msg = tuple(str(part) for part in item["loc"]), item["msg"]
        named = re.fullmatch(r"Value error, ([a-z_][\w.]*): (.*)", msg, re.DOTALL) if not loc else None
        if named:  # a check on the whole file names its key: "finetune.video_frames: 9 exceeds ..."
            loc, msg = tuple(named.group(1).split(".")), named.group(2)
        variables = [override.variable for override in env if _involves(override, loc, msg)]
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        via = f" ({', '.join(variables)})" if variables else ""
        lines.append(f"  {'.'.join(loc) or '<root>'}{via}: {msg}{shown}")
        from_env += bool(variables)
    where = source if not from_env else "environment" if from_env == len(lines) else f"{source} + environment"
    return "\n".join([f"{where}: {len(lines)} invalid parameter(s)", *lines])


def resolve_profile(flag: str | None, env: str | None, in_file: Any, source: str = "params.yaml") -> str:
    """The one rule for the profile: ``--profile`` or ``SOHO_PROFILE``, else the file's ``profile:`` key.

    Flag and environment must agree when both are given (a :class:`ConfigError` names both);
    either beats the file, like every ``SOHO_*`` override. Default: ``embedded``.
    """
    if flag and env and flag != env:
        raise ConfigError(
            f"profile: --profile {flag} and SOHO_PROFILE={env} disagree; give one of them, or the same in both"
        )
    chosen = flag or env or in_file or "embedded"
    if chosen not in PROFILES:
        raise ConfigError(f"{source}: profile: must be one of {list(PROFILES)} (got {chosen!r})")
    return chosen


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    """Load ``params.yaml``, merge the profile overlay and env overrides, validate.

    ``profile`` is the ``--profile`` flag; :func:`resolve_profile` says which profile wins.
    The overlay merged is ``profiles/<params.profile>.yaml``. Under DVC, environment overrides
    are refused (:func:`soho.untracked.refuse_untracked`). Then every override applied later
    is tried (:func:`check_overrides`). Raises :class:`ConfigError` naming each bad key, and
    the variable where it came from the environment.
    """
    path = Path(path)
    in_file = read_yaml(path)
    chosen = resolve_profile(profile, os.environ.get("SOHO_PROFILE"), in_file.get("profile"), str(path))
    overlay_path = path.parent / "profiles" / f"{chosen}.yaml"
    overlay = read_yaml(overlay_path) if chosen != "embedded" else {}
    env = env_overrides(os.environ, Params)
    untracked.refuse_untracked(
        os.environ,
        env,
        Params,
        tracked_profile=resolve_profile(profile, None, in_file.get("profile"), str(path)),
        files={str(path): in_file, str(overlay_path): overlay},
    )
    raw = merge(Params, in_file, overlay)
    raw["profile"] = chosen
    for override in env:
        put(Params, raw, override.path, override.value)
    params = _validated(raw, str(path), env)

    def origin(key: tuple[str, ...]) -> str:
        variables = [o.variable for o in env if key[: len(o.path)] == o.path or o.path[: len(key)] == key]
        return f"environment ({', '.join(variables)})" if variables else str(path)

    check_overrides(params, origin)
    return params


def with_overrides(params: Params, overrides: dict[str, Any], source: str = "overrides") -> Params:
    """A copy of ``params`` with dotted keys set (``{"model.vd.size": 16}``), re-validated.

    A list or mapping given replaces the old value; a section given a mapping takes its keys
    (:func:`soho.overrides.put`). The environment is not read again: ``params`` holds it, and
    read again it would beat the row's own keys. The overrides of the result (its ablation
    rows) are not tried: :func:`load_params` did, and a row's parameters must not try the rows.
    """
    data = params.model_dump(mode="json")
    for dotted, value in overrides.items():
        put(Params, data, tuple(dotted.split(".")), value)
    return _validated(data, source)


def check_overrides(params: Params, origin: Callable[[tuple[str, ...]], str]) -> None:
    """Try every override the pipeline applies later: each ``ablations.runs`` row and the SCL run.

    Why at load time: the ``ablate`` stage resolves its rows one by one, so a bad last row was
    found after the others had trained. ``origin(key)`` says where a failing key came from.
    """
    from soho import ablations  # both build on this module
    from soho.train import variants

    tries: list[tuple[tuple[str, ...], Callable[[], Params]]] = [
        (("ablations", "runs", name), partial(ablations.ablation_params, params, name, row))
        for name, row in params.ablations.runs.items()
    ]
    tries.append((("pretrain_scl", "overrides"), partial(variants.variant_params, params, "scl")))
    problems = []
    for key, build in tries:
        try:
            build()
        except ConfigError as err:
            problems.append(f"{origin(key)}: {err}")
    if problems:
        raise ConfigError("\n".join(problems))


def flatten(params: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of the parameters, as logged to MLflow."""
    data = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat
