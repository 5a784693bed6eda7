"""The experiment table: each toy experiment's config, simulation and figures, and how to run one.

``runner.simulate`` and ``summary.run_all`` both read this table; neither imports the other's caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from dimcollapse.errors import ConfigError, unknown_name
from dimcollapse.theory.alignment import AlignmentConfig, run_alignment
from dimcollapse.theory.augmentation import AugmentationConfig, run_augmentation
from dimcollapse.theory.depth import DepthConfig, run_depth
from dimcollapse.theory.losses import get_loss
from dimcollapse.utils.atomic import atomic_write_json, ensure_writable_dir


@dataclass(frozen=True)
class Experiment:
    """One toy experiment: its config dataclass, its simulation, and its figure function in figures.py."""

    config: type
    run: Callable[[Any], dict[str, Any]]
    figures: str  # name in dimcollapse.theory.figures (imported on use: matplotlib is slow to load)


TABLE: dict[str, Experiment] = {
    "augmentation": Experiment(AugmentationConfig, run_augmentation, "augmentation_figures"),
    "alignment": Experiment(AlignmentConfig, run_alignment, "alignment_figures"),
    "depth": Experiment(DepthConfig, run_depth, "depth_figures"),
}


def experiment(name: str) -> Experiment:
    """The table row of ``name``; an unknown name raises ConfigError listing the valid ones."""
    if name not in TABLE:
        raise unknown_name("experiment", name, list(TABLE))
    return TABLE[name]


def make_config(name: str, **overrides: Any) -> Any:
    """The experiment's default config with the non-None ``overrides`` applied (unknown keys: ConfigError)."""
    cfg = experiment(name).config()
    valid = {f.name for f in fields(cfg)}
    given = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(given) - valid)
    if bad:
        raise ConfigError(f"{name} has no option(s) {', '.join(bad)}. Valid: {', '.join(sorted(valid))}.")
    cfg = replace(cfg, **given)
    if cfg.steps < 0:
        raise ConfigError(f"steps must be >= 0, got {cfg.steps}.")
    if not cfg.lr > 0:
        raise ConfigError(f"lr must be > 0, got {cfg.lr}.")
    get_loss(cfg.loss)
    return cfg


def run_experiment(name: str, cfg: Any) -> dict[str, Any]:
    """Run the named experiment with ``cfg`` single-threaded; results as a JSON-ready dict (+ seconds)."""
    simulate = experiment(name).run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a shared CPU
    start = time.perf_counter()
    try:
        res = simulate(cfg)
    finally:
        torch.set_num_threads(threads)
    res["seconds"] = time.perf_counter() - start
    return res


def write_outputs(res: dict[str, Any], out: Path, name: str = "results.json") -> list[str]:
    """Write the experiment's figures and ``name`` (atomic) into ``out``; return the figure file names."""
    from dimcollapse.theory import figures

    ensure_writable_dir(out)
    draw = getattr(figures, experiment(res["experiment"]).figures)
    res["figures"] = draw(res, out)
    atomic_write_json(out / name, res)
    return list(res["figures"])
