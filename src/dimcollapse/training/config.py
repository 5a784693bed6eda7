"""The run configuration: a typed schema (OmegaConf structured config), YAML + `key=value` overrides, checks.

    cfg = load_config("configs/fmnist/simclr_mlp.yaml", ["optim.lr=0.3", "data.batch_size=128"])

Unknown keys and values of the wrong type or outside their range raise ConfigError naming the key and
listing the valid keys / values. Component names (backbone, projector, objective, regularizer, dataset)
are checked against the registry, and their keyword arguments when the component is built.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf import errors as oc_errors

from dimcollapse.errors import ConfigError
from dimcollapse.training.config_checks import _check_names, _check_probe, _check_values
from dimcollapse.training.config_schema import (
    ACCELERATORS,
    KNN_STORAGE,
    OPTIMIZERS,
    PRECISIONS,
    PROBE_KINDS,
    VIEW_RECIPES,
    DataConfig,
    EMAConfig,
    EvalConfig,
    ModelConfig,
    MonitorConfig,
    ObjectiveConfig,
    OptimConfig,
    RegularizerConfig,
    RunConfig,
    StepConfig,
    TrainerConfig,
    ViewsConfig,
    to_dict,
)

__all__ = [
    "ACCELERATORS",
    "KNN_STORAGE",
    "OPTIMIZERS",
    "PRECISIONS",
    "PROBE_KINDS",
    "VIEW_RECIPES",
    "DataConfig",
    "EMAConfig",
    "EvalConfig",
    "ModelConfig",
    "MonitorConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "RegularizerConfig",
    "RunConfig",
    "StepConfig",
    "TrainerConfig",
    "ViewsConfig",
    "clip",
    "from_dict",
    "load_config",
    "merge_config",
    "to_dict",
    "to_yaml",
]


def _valid_keys(schema: DictConfig, dotted: str) -> list[str]:
    """Keys valid at the level of ``dotted`` (the parent of the offending key) in ``schema``."""
    node: Any = schema
    parts = [p for p in dotted.split(".")[:-1] if p] if dotted else []
    for part in parts:
        if isinstance(node, ListConfig):
            node = OmegaConf.structured(RegularizerConfig)
            continue
        if not isinstance(node, DictConfig) or part not in node:
            break
        node = node[part]
    if isinstance(node, ListConfig):
        node = OmegaConf.structured(RegularizerConfig)
    return sorted(str(k) for k in node) if isinstance(node, DictConfig) else []


def clip(text: object, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (a key or value echoed in an error, never a whole file)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _key_names(keys: list[str]) -> str:
    """Names of unknown keys for an error; text that is not a key name (a foreign file) is not echoed."""
    names = [repr(k) for k in keys[:5] if re.fullmatch(r"[A-Za-z_][\w.-]{0,40}", k)]
    return ", ".join(names) if len(names) == len(keys[:5]) else "not key names: not a YAML recipe"


def _translate(err: Exception, schema: DictConfig) -> ConfigError:
    """Turn an OmegaConf error into a ConfigError that names the key and the valid keys / type."""
    key = clip(getattr(err, "full_key", "") or getattr(err, "key", "") or "")
    msg = clip(str(err).splitlines()[0] if str(err) else type(err).__name__, 200)
    if isinstance(err, (oc_errors.ConfigKeyError, oc_errors.ConfigAttributeError)):
        obj_type = getattr(err, "object_type", None)
        if isinstance(obj_type, type) and dataclasses.is_dataclass(obj_type) and "." not in key:
            valid = sorted(f.name for f in dataclasses.fields(obj_type))
            kind = obj_type.__name__.removesuffix("Config").lower()
            where = "" if obj_type is RunConfig else f" in a {kind} entry"
        else:
            valid, where = _valid_keys(schema, key), ""
        return ConfigError(
            f"unknown config key '{key}'{where}. Valid keys here: {', '.join(valid) or '(none)'}."
        )
    return ConfigError(f"bad value for config key '{key}': {msg}. Fix the value in the YAML or override.")


def merge_config(base: Any, overrides: list[str] | None = None, check_names: bool = True) -> RunConfig:
    """Schema <- ``base`` (dict/DictConfig/RunConfig) <- dotlist ``overrides``; validated RunConfig.

    An override whose value is a mapping (``model.projector_kwargs={d0: 8}``) replaces the whole mapping;
    ``model.projector_kwargs.d0=8`` changes one key.
    """
    schema = OmegaConf.structured(RunConfig)
    try:
        cfg = OmegaConf.merge(schema, base if base is not None else {})
        if overrides:
            for item in overrides:
                if "=" not in item:
                    raise ConfigError(f"override '{item}' must look like key=value (e.g. optim.lr=0.1).")
            for item in overrides:
                key, _, text = item.partition("=")
                value = OmegaConf.from_dotlist([f"_v={text}"])["_v"]
                node = OmegaConf.select(cfg, key.strip(), default=None)
                plain = isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict
                if isinstance(value, DictConfig) and plain:  # a whole mapping replaces a kwargs dict
                    OmegaConf.update(cfg, key.strip(), {}, merge=False)
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    except (oc_errors.OmegaConfBaseException, ValueError) as e:
        if isinstance(e, oc_errors.OmegaConfBaseException):
            raise _translate(e, schema) from None
        raise ConfigError(f"cannot parse config overrides {overrides!r}: {e}") from None
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, RunConfig)
    _check_values(obj)
    _check_probe(obj)
    if check_names:
        _check_names(obj)
    return obj


def load_config(
    path: str | os.PathLike[str] | None, overrides: list[str] | None = None, check_names: bool = True
) -> RunConfig:
    """Read a YAML recipe (``path`` may be None for the defaults), apply ``key=value`` overrides, validate."""
    base: Any = _read_recipe(Path(path)) if path is not None else {}
    return merge_config(base, overrides, check_names=check_names)


REPLACED = ("kwargs", "overrides")  # mappings that a recipe replaces wholesale instead of merging


def _overlay(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``parent``: sections merge; ``*kwargs`` / ``overrides`` mappings and lists replace."""
    out = dict(parent)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and not str(key).endswith(REPLACED):
            out[key] = _overlay(old, value)
        else:
            out[key] = value
    return out


def _read_recipe(p: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML recipe as a dict; a top-level ``base: other.yaml`` (relative to the file) is read first."""
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist; pass the path of a YAML recipe (see configs/).")
    if p.resolve() in seen:
        raise ConfigError(f"config file '{p}' includes itself through 'base'; remove the cycle.")
    try:
        node = OmegaConf.load(p)
    except Exception as e:  # yaml.YAMLError and friends: say where, never echo the file's content
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = clip(getattr(e, "problem", None) or type(e).__name__, 80)
        raise ConfigError(f"config file '{p}' is not valid YAML ({problem}{where}); fix it.") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"config file '{p}' must hold a mapping of keys at the top level.")
    raw = OmegaConf.to_container(node, resolve=False)
    assert isinstance(raw, dict)
    data = {str(k): v for k, v in raw.items()}
    valid = {f.name for f in dataclasses.fields(RunConfig)} | {"base"}
    unknown = sorted(k for k in data if k not in valid)
    if unknown:
        raise ConfigError(
            f"config file '{p}' has {len(unknown)} unknown top-level key(s) ({_key_names(unknown)}); "
            f"is it a dimcollapse recipe? Valid keys: {', '.join(sorted(valid))}."
        )
    parent_name = data.pop("base", None)
    if parent_name is None:
        return data
    parent = _read_recipe(p.parent / str(parent_name), (*seen, p.resolve()))
    return _overlay(parent, data)


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from ``to_dict`` output (validated)."""
    return merge_config(data, None, check_names=False)


def to_yaml(cfg: RunConfig) -> str:
    """YAML text of ``cfg``."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
