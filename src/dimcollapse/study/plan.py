"""A study's plan: every run's config resolved and validated once, before anything is written.

Large grids show progress while they resolve (a line every few seconds with an ETA); grids above
``MAX_RUNS`` are refused when the study file is read (``grid.py``), before any config is built.
"""

from __future__ import annotations

import sys
import time

from dimcollapse.errors import DimCollapseError
from dimcollapse.study.grid import MAX_RUNS, RunSpec, Study
from dimcollapse.training.config import RunConfig, load_config
from dimcollapse.utils.names import check_folder_name

__all__ = ["MAX_RUNS", "resolve_configs"]
PROGRESS_EVERY_S = 5.0


def resolve_configs(
    study: Study, extra_overrides: list[str] | None = None
) -> list[tuple[RunSpec, RunConfig]]:
    """Validate every run's name and config before anything trains (a typo fails the study at once)."""
    for spec in study.runs:  # names first: cheap, and a bad one must not wait behind thousands of configs
        check_folder_name(spec.run_id, "study run")
    out = []
    t0 = last = time.monotonic()
    total = len(study.runs)
    for i, spec in enumerate(study.runs):
        try:
            overrides = [*spec.dotlist(), *(extra_overrides or []), f"name={spec.run_id}"]
            cfg = load_config(spec.recipe or study.base, overrides)
        except DimCollapseError as e:
            raise type(e)(f"study run '{spec.run_id}': {e}") from None
        out.append((spec, cfg))
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S and i + 1 < total:
            last = now
            eta = (now - t0) / (i + 1) * (total - i - 1)
            sys.stderr.write(f"study '{study.name}': resolved {i + 1}/{total} run configs, ETA {eta:.0f}s\n")
            sys.stderr.flush()
    return out
