"""Run one toy experiment by name, write its figures and results.json to a folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from dimcollapse.errors import ConfigError, unknown_name
from dimcollapse.theory.alignment import AlignmentConfig, run_alignment
from dimcollapse.theory.augmentation import AugmentationConfig, run_augmentation
from dimcollapse.theory.depth import DepthConfig, run_depth
from dimcollapse.utils.atomic import atomic_write_json, ensure_writable_dir

EXPERIMENTS = ("augmentation", "alignment", "depth", "all")
CONFIGS: dict[str, type] = {
    "augmentation": AugmentationConfig,
    "alignment": AlignmentConfig,
    "depth": DepthConfig,
}


def make_config(experiment: str, **overrides: Any) -> Any:
    """The experiment's default config with the non-None ``overrides`` applied (unknown keys: ConfigError)."""
    if experiment not in CONFIGS:
        raise unknown_name("experiment", experiment, list(CONFIGS))
    cfg = CONFIGS[experiment]()
    valid = {f.name for f in fields(cfg)}
    given = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(given) - valid)
    if bad:
        raise ConfigError(
            f"{experiment} has no option(s) {', '.join(bad)}. Valid: {', '.join(sorted(valid))}."
        )
    cfg = replace(cfg, **given)
    if cfg.steps < 0:
        raise ConfigError(f"steps must be >= 0, got {cfg.steps}.")
    if not cfg.lr > 0:
        raise ConfigError(f"lr must be > 0, got {cfg.lr}.")
    from dimcollapse.theory.losses import get_loss

    get_loss(cfg.loss)
    return cfg


def run_experiment(experiment: str, cfg: Any) -> dict[str, Any]:
    """Run the named experiment (not 'all') with ``cfg`` single-threaded; results as a JSON-ready dict."""
    runner: dict[str, Callable[[Any], dict[str, Any]]] = {
        "augmentation": run_augmentation,
        "alignment": run_alignment,
        "depth": run_depth,
    }
    if experiment not in runner:
        raise unknown_name("experiment", experiment, list(runner))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a shared CPU
    start = time.perf_counter()
    try:
        res = runner[experiment](cfg)
    finally:
        torch.set_num_threads(threads)
    res["seconds"] = time.perf_counter() - start
    return res


def write_outputs(res: dict[str, Any], out: Path, name: str = "results.json") -> list[str]:
    """Write the experiment's figures and ``name`` (atomic) into ``out``; return the figure file names."""
    from dimcollapse.theory import figures

    ensure_writable_dir(out)
    draw = {
        "augmentation": figures.augmentation_figures,
        "alignment": figures.alignment_figures,
        "depth": figures.depth_figures,
    }[res["experiment"]]
    res["figures"] = draw(res, out)
    atomic_write_json(out / name, res)
    return list(res["figures"])


def simulate(experiment: str, out: str | Path, **overrides: Any) -> dict[str, Any]:
    """Run ``experiment`` ('augmentation' | 'alignment' | 'depth' | 'all'), write figures + results.json."""
    out = Path(out)
    if experiment == "all":
        from dimcollapse.theory.summary import run_all

        return run_all(out, **overrides)
    cfg = make_config(experiment, **overrides)
    res = run_experiment(experiment, cfg)
    write_outputs(res, out)
    return res
