"""The run configuration: a typed schema (OmegaConf structured config), YAML + `key=value` overrides, checks.

    cfg = load_config("configs/fmnist/simclr_mlp.yaml", ["optim.lr=0.3", "data.batch_size=128"])

Unknown keys and values of the wrong type or outside their range raise ConfigError naming the key and
listing the valid keys / values. Component names (backbone, projector, objective, regularizer, dataset)
are checked against the registry, and their keyword arguments when the component is built.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf import errors as oc_errors

from dimcollapse.errors import ConfigError

OPTIMIZERS = ("sgd", "lars", "adamw")
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "auto")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
VIEW_RECIPES = ("simclr", "byol", "none")


@dataclass
class ViewsConfig:
    """Batched view augmentation (dimcollapse.data.views.ViewAugment)."""

    recipe: str = "simclr"
    n_views: int = 2
    image_size: int | None = None  # side of the views fed to the backbone; None: the dataset's
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Dataset name and root, the subset fraction, batch size and views."""

    name: str = "fashion_mnist"
    root: str | None = None
    fraction: float = 1.0
    batch_size: int = 256
    num_workers: int = 0
    kwargs: dict[str, Any] = field(default_factory=dict)
    views: ViewsConfig = field(default_factory=ViewsConfig)


@dataclass
class ModelConfig:
    """Backbone and projector names (registry) with their keyword arguments."""

    backbone: str = "small_resnet"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    projector: str = "mlp"
    projector_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConfig:
    """The SSL loss (registry name) and its keyword arguments."""

    name: str = "simclr"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RegularizerConfig:
    """One anti-collapse regularizer (registry name) and its keyword arguments (weight, schedule, ...)."""

    name: str = "so"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Optimizer (sgd | lars | adamw), learning rate schedule (linear warm-up + cosine) and length."""

    name: str = "lars"
    lr: float = 0.3
    weight_decay: float = 1e-6
    momentum: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lars_eta: float = 0.02
    warmup_epochs: float = 1.0
    min_lr_fraction: float = 0.0
    epochs: int = 10
    max_steps: int | None = None
    max_time_minutes: float | None = None


@dataclass
class TrainerConfig:
    """Lightning trainer settings: device, precision, seed, logging and checkpoint cadence."""

    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    seed: int = 0
    log_every: int = 10
    sync_batchnorm: bool = False
    checkpoint_every: int = 100
    progress_bar: bool = True
    tensorboard: bool = True


@dataclass
class MonitorConfig:
    """Collapse monitor: every n steps on a fixed held-out probe batch."""

    enabled: bool = True
    every_n_steps: int = 50
    probe_size: int = 512
    warn_fraction: float = 0.5
    lid_k: int = 20
    weight_spectra: bool = True


@dataclass
class EvalConfig:
    """Final evaluation: weighted kNN, offline linear probe, online probe during training."""

    knn_k: list[int] = field(default_factory=lambda: [20, 200])
    temperature: float = 0.07
    linear_probe: bool = True
    linear_probe_epochs: int = 100
    linear_probe_weight_decay: float = 1e-4
    online_probe: bool = True
    online_probe_lr: float = 0.1
    batch_size: int = 1024
    max_train: int | None = None
    max_test: int | None = None


@dataclass
class RunConfig:
    """A whole training run."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    regularizers: list[RegularizerConfig] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


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


def _translate(err: Exception, schema: DictConfig) -> ConfigError:
    """Turn an OmegaConf error into a ConfigError that names the key and the valid keys / type."""
    key = str(getattr(err, "full_key", "") or getattr(err, "key", "") or "")
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
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


def _check_values(cfg: RunConfig) -> None:
    """Range and choice checks that the type system does not express."""

    def choice(key: str, value: Any, valid: tuple[str, ...]) -> None:
        if str(value) not in valid:
            raise ConfigError(f"{key} = {value!r} is not valid. Valid values: {', '.join(valid)}.")

    def positive(key: str, value: float | int | None, allow_none: bool = False, strict: bool = True) -> None:
        if value is None and allow_none:
            return
        if value is None or (value <= 0 if strict else value < 0):
            bound = "> 0" if strict else ">= 0"
            raise ConfigError(f"{key} must be {bound}, got {value!r}.")

    choice("optim.name", cfg.optim.name, OPTIMIZERS)
    choice("trainer.precision", cfg.trainer.precision, PRECISIONS)
    choice("trainer.accelerator", cfg.trainer.accelerator, ACCELERATORS)
    choice("data.views.recipe", cfg.data.views.recipe, VIEW_RECIPES)
    if not 0.0 < cfg.data.fraction <= 1.0:
        raise ConfigError(f"data.fraction must be in (0, 1], got {cfg.data.fraction!r}.")
    positive("data.batch_size", cfg.data.batch_size)
    positive("data.num_workers", cfg.data.num_workers, strict=False)
    if cfg.data.views.n_views < 2:
        raise ConfigError(
            f"data.views.n_views must be >= 2 (SSL compares views), got {cfg.data.views.n_views}."
        )
    positive("data.views.image_size", cfg.data.views.image_size, allow_none=True)
    positive("optim.lr", cfg.optim.lr)
    positive("optim.weight_decay", cfg.optim.weight_decay, strict=False)
    if not 0.0 <= cfg.optim.momentum < 1.0:
        raise ConfigError(f"optim.momentum must be in [0, 1), got {cfg.optim.momentum!r}.")
    if len(cfg.optim.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(cfg.optim.betas)!r}.")
    positive("optim.lars_eta", cfg.optim.lars_eta)
    positive("optim.warmup_epochs", cfg.optim.warmup_epochs, strict=False)
    if not 0.0 <= cfg.optim.min_lr_fraction <= 1.0:
        raise ConfigError(f"optim.min_lr_fraction must be in [0, 1], got {cfg.optim.min_lr_fraction!r}.")
    positive("optim.epochs", cfg.optim.epochs)
    positive("optim.max_steps", cfg.optim.max_steps, allow_none=True)
    positive("optim.max_time_minutes", cfg.optim.max_time_minutes, allow_none=True)
    positive("trainer.num_threads", cfg.trainer.num_threads, allow_none=True)
    positive("trainer.log_every", cfg.trainer.log_every)
    positive("trainer.checkpoint_every", cfg.trainer.checkpoint_every)
    positive("monitor.every_n_steps", cfg.monitor.every_n_steps)
    if cfg.monitor.probe_size < 4:
        raise ConfigError(f"monitor.probe_size must be >= 4, got {cfg.monitor.probe_size}.")
    if not 0.0 <= cfg.monitor.warn_fraction <= 1.0:
        raise ConfigError(f"monitor.warn_fraction must be in [0, 1], got {cfg.monitor.warn_fraction!r}.")
    positive("monitor.lid_k", cfg.monitor.lid_k)
    if not cfg.eval.knn_k or any(int(k) < 1 for k in cfg.eval.knn_k):
        raise ConfigError(
            f"eval.knn_k must be a non-empty list of integers >= 1, got {list(cfg.eval.knn_k)!r}."
        )
    positive("eval.temperature", cfg.eval.temperature)
    positive("eval.linear_probe_epochs", cfg.eval.linear_probe_epochs)
    positive("eval.batch_size", cfg.eval.batch_size)
    positive("eval.max_train", cfg.eval.max_train, allow_none=True)
    positive("eval.max_test", cfg.eval.max_test, allow_none=True)


def _check_names(cfg: RunConfig) -> None:
    """Every component name must be registered (the registry's error lists the valid names)."""
    from dimcollapse.registry import get

    get("dataset", cfg.data.name)
    get("backbone", cfg.model.backbone)
    get("projector", cfg.model.projector)
    get("objective", cfg.objective.name)
    for reg in cfg.regularizers:
        get("regularizer", reg.name)


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
    except Exception as e:  # yaml.YAMLError and friends
        raise ConfigError(f"config file '{p}' is not valid YAML: {e}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"config file '{p}' must hold a mapping of keys at the top level.")
    raw = OmegaConf.to_container(node, resolve=False)
    assert isinstance(raw, dict)
    data = {str(k): v for k, v in raw.items()}
    parent_name = data.pop("base", None)
    if parent_name is None:
        return data
    parent = _read_recipe(p.parent / str(parent_name), (*seen, p.resolve()))
    return _overlay(parent, data)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict of ``cfg`` (for checkpoints and JSON)."""
    out = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from ``to_dict`` output (validated)."""
    return merge_config(data, None, check_names=False)


def to_yaml(cfg: RunConfig) -> str:
    """YAML text of ``cfg``."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
