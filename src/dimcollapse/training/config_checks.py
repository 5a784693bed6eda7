"""Validation of a merged run configuration: finite numbers, ranges, choices and registered names."""

from __future__ import annotations

import math
from typing import Any

from dimcollapse.errors import ConfigError
from dimcollapse.training.config_schema import (
    ACCELERATORS,
    KNN_STORAGE,
    OPTIMIZERS,
    PRECISIONS,
    PROBE_DTYPES,
    PROBE_KINDS,
    VIEW_RECIPES,
    RunConfig,
    to_dict,
)

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
        ("eval.probe_dtype", e.probe_dtype, PROBE_DTYPES),
    ):
        if str(value) not in valid:
            raise ConfigError(f"{key} = {value!r} is not valid. Valid values: {', '.join(valid)}.")
    if not e.sgd_probe_lr > 0 or e.sgd_probe_batch_size < 1:
        raise ConfigError(
            f"eval.sgd_probe_lr must be > 0 and eval.sgd_probe_batch_size >= 1, got {e.sgd_probe_lr} "
            f"and {e.sgd_probe_batch_size}."
        )
    if not e.linear_probe_tolerance >= 0:
        raise ConfigError(f"eval.linear_probe_tolerance must be >= 0, got {e.linear_probe_tolerance!r}.")


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
    _check_kernels(cfg)
    _check_monitor_and_eval(cfg)


def _check_kernels(cfg: RunConfig) -> None:
    """trainer.cudnn_benchmark / tf32 / strided_1x1_workaround are choices the accelerator can make (a
    'gpu' or 'auto' accelerator is checked against the machine when the run is planned)."""
    from dimcollapse.training.device_defaults import DeviceInfo, choose_kernels

    accelerator = str(cfg.trainer.accelerator)
    if accelerator in ("cpu", "mps"):
        choose_kernels(cfg.trainer, DeviceInfo(accelerator))


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
