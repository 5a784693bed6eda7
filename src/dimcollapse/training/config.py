"""The run configuration: a typed schema (OmegaConf structured config), YAML + `key=value` overrides, checks.

    cfg = load_config("configs/fmnist/simclr_mlp.yaml", ["optim.lr=0.3", "data.batch_size=128"])

Unknown keys and values of the wrong type or outside their range raise ConfigError naming the key and
listing the valid keys / values. Component names (backbone, projector, objective, regularizer, dataset)
are checked against the registry, and their keyword arguments when the component is built.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
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
PROBE_KINDS = ("lbfgs", "sgd")
KNN_STORAGE = ("float32", "float16", "bfloat16")


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
    batch_size: int = 256  # per process and per micro-batch (global: x processes x accumulation)
    num_workers: int = 0
    pin_memory: bool = False  # page-locked batches for faster host-to-GPU copies (used on CUDA only)
    persistent_workers: bool = False  # keep loader workers between epochs (needs num_workers >= 1)
    prefetch_factor: int | None = None  # batches each worker loads ahead (needs num_workers >= 1)
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
class EMAConfig:
    """The momentum target's EMA: tau from base_momentum to final_momentum by a cosine over the run.

    None: the objective's default (BYOL 0.99 -> 1, DINO 0.996 -> 1; ``default_momentum``)."""

    base_momentum: float | None = None
    final_momentum: float | None = None


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
    """Lightning trainer settings: devices and nodes, gradient accumulation, precision, seed, logging and
    checkpoint cadence."""

    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1  # > 1 under a multi-node launcher only (srun, torchrun)
    accumulate_grad_batches: int = 1  # micro-batches per optimizer step
    strategy: str = "auto"
    precision: str = "32-true"
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    seed: int = 0
    log_every: int = 10
    sync_batchnorm: bool = False
    checkpoint_every: int = 100
    progress_bar: bool = True
    tensorboard: bool = True  # False drops "tensorboard" from loggers
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])  # + wandb, mlflow


@dataclass
class MonitorConfig:
    """Collapse monitor: every n steps on a fixed held-out probe batch."""

    enabled: bool = True
    every_n_steps: int = 50
    probe_size: int = 512
    warn_fraction: float = 0.5
    lid_k: int = 20
    weight_spectra: bool = True
    max_share: float | None = None  # a due measurement is skipped beyond this share of training time


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
    lid_k: int = 20  # neighbours of the final LID estimate (needs more test images than this)
    linear_probe_kind: str = "lbfgs"  # lbfgs: fast CPU probe on centre crops; sgd: the papers' protocol
    sgd_probe_lr: float = 0.1  # the SGD probe (DirectCLR's linear_probe.py): lr, batch, weight decay
    sgd_probe_batch_size: int = 256
    sgd_probe_weight_decay: float = 1.0e-6
    sgd_probe_augment: bool = True  # random-resized crop + flip of the training images every epoch
    knn_storage: str = "float32"  # dtype of the kNN bank on its device: float32 | float16 | bfloat16


@dataclass
class RunConfig:
    """A whole training run."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    regularizers: list[RegularizerConfig] = field(default_factory=list)
    ema: EMAConfig = field(default_factory=EMAConfig)
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


MAX_ABS_FLOAT = 1e12  # no setting of a run is meaningful beyond this; larger values overflow timers etc.
MAX_INT = 2**53


def _check_finite(node: Any, key: str = "") -> None:
    """Every number in the config (including component kwargs) is finite and of a sane magnitude."""
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, f"{key}[{i}]")
    elif isinstance(node, bool):
        return
    elif isinstance(node, float):
        if not math.isfinite(node):
            raise ConfigError(f"{key} = {node!r} is not a finite number; give a real value, e.g. the default")
        if abs(node) > MAX_ABS_FLOAT:
            raise ConfigError(f"{key} = {node!r} is out of range (|value| <= {MAX_ABS_FLOAT:g}); fix it.")
    elif isinstance(node, int) and abs(node) > MAX_INT:
        raise ConfigError(f"{key} = {node} is out of range (|value| <= 2^53); fix the value.")


def _check_devices(devices: Any) -> None:
    """trainer.devices: a positive count, -1 / 'auto' (all), or a non-empty list of device indices."""
    if isinstance(devices, (list, tuple)):
        ok = bool(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    elif isinstance(devices, str):
        text = devices.strip()
        ok = text == "auto" or (text.lstrip("-").isdigit() and (int(text) > 0 or int(text) == -1))
    else:
        ok = isinstance(devices, int) and not isinstance(devices, bool) and (devices > 0 or devices == -1)
    if not ok:
        raise ConfigError(
            f"trainer.devices = {devices!r} is not valid: give a number of devices >= 1 (e.g. 1), -1 or "
            "'auto' for all, or a list of device indices such as [0, 1]."
        )


def _check_loader(cfg: RunConfig) -> None:
    """data.persistent_workers / data.prefetch_factor need loader worker processes (num_workers >= 1)."""
    d = cfg.data
    if d.prefetch_factor is not None and d.prefetch_factor < 1:
        raise ConfigError(
            f"data.prefetch_factor must be >= 1 (or null: the default), got {d.prefetch_factor}."
        )
    for key, on in (("persistent_workers", d.persistent_workers), ("prefetch_factor", d.prefetch_factor)):
        if on and d.num_workers < 1:
            raise ConfigError(
                f"data.{key} applies to loader worker processes but data.num_workers = {d.num_workers}; "
                f"set data.num_workers >= 1 or remove data.{key}."
            )


def _check_probe(cfg: RunConfig) -> None:
    """eval.linear_probe_kind / knn_storage are known names; the SGD probe's lr and batch are positive."""
    e = cfg.eval
    for key, value, valid in (
        ("eval.linear_probe_kind", e.linear_probe_kind, PROBE_KINDS),
        ("eval.knn_storage", e.knn_storage, KNN_STORAGE),
    ):
        if str(value) not in valid:
            raise ConfigError(f"{key} = {value!r} is not valid. Valid values: {', '.join(valid)}.")
    if not e.sgd_probe_lr > 0 or e.sgd_probe_batch_size < 1:
        raise ConfigError(
            f"eval.sgd_probe_lr must be > 0 and eval.sgd_probe_batch_size >= 1, got {e.sgd_probe_lr} "
            f"and {e.sgd_probe_batch_size}."
        )


def _choice(key: str, value: Any, valid: tuple[str, ...]) -> None:
    """Refuse ``value`` unless it is one of ``valid``."""
    if str(value) not in valid:
        raise ConfigError(f"{key} = {value!r} is not valid. Valid values: {', '.join(valid)}.")


def _positive(key: str, value: float | int | None, allow_none: bool = False, strict: bool = True) -> None:
    """Refuse ``value`` unless it is > 0 (``strict``) or >= 0; ``None`` only with ``allow_none``."""
    if value is None and allow_none:
        return
    if value is None or (value <= 0 if strict else value < 0):
        bound = "> 0" if strict else ">= 0"
        raise ConfigError(f"{key} must be {bound}, got {value!r}.")


def _check_values(cfg: RunConfig) -> None:
    """Range and choice checks that the type system does not express."""
    choice, positive = _choice, _positive
    choice("optim.name", cfg.optim.name, OPTIMIZERS)
    choice("trainer.precision", cfg.trainer.precision, PRECISIONS)
    choice("trainer.accelerator", cfg.trainer.accelerator, ACCELERATORS)
    choice("data.views.recipe", cfg.data.views.recipe, VIEW_RECIPES)
    _check_finite(to_dict(cfg))
    _check_devices(cfg.trainer.devices)
    if not str(cfg.trainer.strategy).strip():
        raise ConfigError("trainer.strategy is empty; use 'auto' (one process) or e.g. 'ddp_spawn'.")
    if cfg.data.root is not None and not str(cfg.data.root).strip():
        raise ConfigError("data.root is empty; give the folder holding the data, or remove the key.")
    if not 0.0 < cfg.data.fraction <= 1.0:
        raise ConfigError(f"data.fraction must be in (0, 1], got {cfg.data.fraction!r}.")
    positive("data.batch_size", cfg.data.batch_size)
    positive("data.num_workers", cfg.data.num_workers, strict=False)
    _check_loader(cfg)
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
    if cfg.optim.max_time_minutes is not None and cfg.optim.max_time_minutes > 1e9:
        raise ConfigError(
            f"optim.max_time_minutes = {cfg.optim.max_time_minutes!r} is too large (at most 1e9); "
            "remove the key for no time limit."
        )
    positive("trainer.num_threads", cfg.trainer.num_threads, allow_none=True)
    positive("trainer.num_nodes", cfg.trainer.num_nodes)
    positive("trainer.accumulate_grad_batches", cfg.trainer.accumulate_grad_batches)
    positive("trainer.log_every", cfg.trainer.log_every)
    positive("trainer.checkpoint_every", cfg.trainer.checkpoint_every)
    _check_monitor_and_eval(cfg)


def _check_monitor_and_eval(cfg: RunConfig) -> None:
    """Range checks of the monitor and eval blocks."""
    positive = _positive
    positive("monitor.every_n_steps", cfg.monitor.every_n_steps)
    if cfg.monitor.probe_size < 4:
        raise ConfigError(f"monitor.probe_size must be >= 4, got {cfg.monitor.probe_size}.")
    if not 0.0 <= cfg.monitor.warn_fraction <= 1.0:
        raise ConfigError(f"monitor.warn_fraction must be in [0, 1], got {cfg.monitor.warn_fraction!r}.")
    positive("monitor.lid_k", cfg.monitor.lid_k)
    from dimcollapse.training.loggers import check_logger_names

    check_logger_names(list(cfg.trainer.loggers))
    share = cfg.monitor.max_share
    if share is not None and not 0.0 < share <= 1.0:
        raise ConfigError(f"monitor.max_share must be in (0, 1] (e.g. 0.01) or null, got {share!r}.")
    if not cfg.eval.knn_k or any(int(k) < 1 for k in cfg.eval.knn_k):
        raise ConfigError(
            f"eval.knn_k must be a non-empty list of integers >= 1, got {list(cfg.eval.knn_k)!r}."
        )
    positive("eval.temperature", cfg.eval.temperature)
    positive("eval.linear_probe_epochs", cfg.eval.linear_probe_epochs)
    positive("eval.batch_size", cfg.eval.batch_size)
    positive("eval.max_train", cfg.eval.max_train, allow_none=True)
    positive("eval.max_test", cfg.eval.max_test, allow_none=True)
    if cfg.eval.lid_k < 2:
        raise ConfigError(f"eval.lid_k must be >= 2 (LID needs two neighbours), got {cfg.eval.lid_k}.")


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
