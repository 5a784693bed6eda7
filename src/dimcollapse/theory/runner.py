"""Run one toy experiment by name (or all of them), write its figures and results.json to a folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dimcollapse.theory.experiments import TABLE, make_config, run_experiment, write_outputs
from dimcollapse.theory.summary import run_all

EXPERIMENTS = (*TABLE, "all")

__all__ = ["EXPERIMENTS", "make_config", "run_experiment", "simulate", "write_outputs"]


def simulate(experiment: str, out: str | Path, **overrides: Any) -> Mapping[str, Any]:
    """Run ``experiment`` ('augmentation' | 'alignment' | 'depth' | 'all'), write figures + results.json
    (the experiment's results, or for 'all' the ``TheorySummary``)."""
    out = Path(out)
    if experiment == "all":
        return run_all(out, **overrides)
    cfg = make_config(experiment, **overrides)
    res = run_experiment(experiment, cfg)
    write_outputs(res, out)
    return res
