"""Scaled-down variants of a paper study by name: fewer epochs, fewer devices, a smaller global batch with
the learning rate scaled by the study's rule, derived from the faithful runs (never a hand-edited copy).

    scale:
      one_gpu_short: {epochs: 10, devices: 1, global_batch: 256, lr_scaling: linear}

gives, for every run, ``optim.epochs`` = 10 (warm-up epochs and the regularizers' warm-up scaled by the same
factor), ``trainer.devices`` = 1 (strategy auto), ``data.batch_size`` = 256 per device and ``optim.lr`` =
lr x 256 / B (linear) or lr x sqrt(256 / B) (sqrt), B the run's own global batch; ``lr_scaling`` may map
run-name patterns to rules (``{"simclr*": sqrt, "byol*": linear}``: each method's own rule).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Any

from dimcollapse.errors import ConfigError
from dimcollapse.study.grid import RunSpec, Study
from dimcollapse.training.config import RunConfig, load_config, to_dict

SCALE_KEYS = ("epochs", "devices", "global_batch", "lr_scaling", "set")
LR_RULES = ("linear", "sqrt", "none")


def global_batch(cfg: RunConfig) -> int:
    """Images per optimizer step: data.batch_size x devices (a count or a list of device ids) x nodes x
    accumulated micro-batches."""
    devices = cfg.trainer.devices
    n = len(devices) if isinstance(devices, (list, tuple)) or hasattr(devices, "__len__") else int(devices)
    nodes = int(getattr(cfg.trainer, "num_nodes", 1) or 1)
    accumulate = int(getattr(cfg.trainer, "accumulate_grad_batches", 1) or 1)
    return int(cfg.data.batch_size) * n * nodes * accumulate


def _spec(study: Study, name: str) -> dict[str, Any]:
    table = study.options.get("scale") or {}
    if not isinstance(table, dict) or name not in table:
        known = ", ".join(sorted(table)) if isinstance(table, dict) and table else "none"
        raise ConfigError(f"study '{study.name}' has no scaled variant '{name}'. Its variants: {known}.")
    spec = table[name]
    bad = sorted(set(spec) - set(SCALE_KEYS)) if isinstance(spec, dict) else ["(not a mapping)"]
    if bad:
        raise ConfigError(f"scaled variant '{name}': unknown key(s) {bad}; valid: {', '.join(SCALE_KEYS)}.")
    rules = spec.get("lr_scaling", "linear")
    if not all(r in LR_RULES for r in (rules.values() if isinstance(rules, dict) else [rules])):
        raise ConfigError(
            f"scaled variant '{name}': lr_scaling must be one of {', '.join(LR_RULES)} or a mapping of "
            "run-name patterns to them."
        )
    return spec


def lr_rule(spec: dict[str, Any], variant: str) -> str:
    """The learning-rate scaling rule of run ``variant``: the spec's rule, or its first matching pattern."""
    rules = spec.get("lr_scaling", "linear")
    if not isinstance(rules, dict):
        return str(rules)
    for pattern, rule in rules.items():
        if fnmatch.fnmatchcase(variant, str(pattern)):
            return str(rule)
    raise ConfigError(f"lr_scaling names no rule for run '{variant}'; add a pattern that matches it.")


def scaled_overrides(cfg: RunConfig, spec: dict[str, Any], rule: str = "linear") -> dict[str, Any]:
    """The overrides that turn the resolved run ``cfg`` into its scaled variant ``spec``."""
    out: dict[str, Any] = {}
    if "epochs" in spec:
        factor = int(spec["epochs"]) / int(cfg.optim.epochs)
        out["optim.epochs"] = int(spec["epochs"])
        out["optim.warmup_epochs"] = float(cfg.optim.warmup_epochs) * factor
        regs = to_dict(cfg)["regularizers"]
        for reg in regs:
            kw = reg.get("kwargs") or {}
            if kw.get("warmup_epochs"):
                kw["warmup_epochs"] = float(kw["warmup_epochs"]) * factor
        if any((r.get("kwargs") or {}).get("warmup_epochs") for r in regs):
            out["regularizers"] = regs
    devices = int(spec.get("devices", 0)) or None
    if devices is not None:
        out["trainer.devices"] = devices
        if devices == 1:
            out["trainer.strategy"] = "auto"
    if "global_batch" in spec:
        new, old = int(spec["global_batch"]), global_batch(cfg)
        nodes = int(getattr(cfg.trainer, "num_nodes", 1) or 1)
        accumulate = int(getattr(cfg.trainer, "accumulate_grad_batches", 1) or 1)
        ranks = (devices or old // (int(cfg.data.batch_size) * nodes * accumulate)) * nodes * accumulate
        if new < ranks or new % ranks:
            raise ConfigError(f"scaled global batch {new} does not divide over {ranks} micro-batch slot(s).")
        out["data.batch_size"] = new // ranks
        factor = {"linear": new / old, "sqrt": math.sqrt(new / old), "none": 1.0}[rule]
        out["optim.lr"] = float(cfg.optim.lr) * factor
    out.update(spec.get("set") or {})
    return out


def scaled_study(study: Study, name: str) -> Study:
    """``study`` with every run turned into its scaled variant ``name`` (study name ``<study>__<name>``)."""
    spec = _spec(study, name)
    runs: list[RunSpec] = []
    for run in study.runs:
        cfg = load_config(run.recipe or study.base, run.dotlist())
        overrides = {**run.overrides, **scaled_overrides(cfg, spec, lr_rule(spec, run.variant))}
        runs.append(dataclasses.replace(run, overrides=overrides))
    options = {**study.options, "scaled": name}
    return dataclasses.replace(study, name=f"{study.name}__{name}", runs=runs, options=options)
