"""Typed configuration mirroring ``params.yaml``.

Why: every stage reads the same file, so a typo or an impossible value must fail
before any work starts, naming the dotted key and the reason. The profile
(one of ``PROFILES``) is resolved once, by :func:`resolve_profile`; the paper profile is an
overlay file (``profiles/paper.yaml``) merged over ``params.yaml``. Environment variables
``SOHO_<SECTION>__<KEY>`` override both (e.g. ``SOHO_SHARD__MAX_BAD_FRACTION=0.1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from soho.sections import (  # noqa: F401  (re-exported: soho.config is where callers find every section)
    FINETUNE_VARIANTS,
    AblationParams,
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
    deep_merge,
)

PROFILES = ("embedded", "paper")  # the one list: Params.profile, stage.run's --profile, load_params


class ConfigError(ValueError):
    """A parameter is missing, unknown, of the wrong type or impossible."""


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
        return self

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
        return _EnvWithoutProfile(settings_cls), init_settings


class _EnvWithoutProfile(EnvSettingsSource):
    """``SOHO_*`` overrides, except ``SOHO_PROFILE``: :func:`load_params` reads that one.

    Why: the profile also picks the overlay file, so it is resolved in one place; read again
    here, it could name one profile while the other one's overlay is merged.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name == "profile":
            return None, field_name, False
        return super().get_field_value(field, field_name)


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


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: {err.error_count()} invalid parameter(s)"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {key}: {item['msg']}{shown}")
    return "\n".join(lines)


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
    The overlay merged is ``profiles/<params.profile>.yaml``. Raises :class:`ConfigError`
    naming each bad key.
    """
    import os

    path = Path(path)
    raw = read_yaml(path)
    chosen = resolve_profile(profile, os.environ.get("SOHO_PROFILE"), raw.get("profile"), str(path))
    if chosen != "embedded":
        overlay_path = path.parent / "profiles" / f"{chosen}.yaml"
        raw = deep_merge(raw, read_yaml(overlay_path))
    raw["profile"] = chosen
    try:
        return Params(**raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(str(path), err)) from None


def with_overrides(params: Params, overrides: dict[str, Any], source: str = "overrides") -> Params:
    """A copy of ``params`` with dotted keys replaced (``{"model.vd.size": 16}``), re-validated."""
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return Params(**deep_merge(params.model_dump(mode="json"), nested))
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


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
