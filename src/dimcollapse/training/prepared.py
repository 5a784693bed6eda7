"""Everything a run needs, built and checked before its folder is written (``prepare``).

    prep = prepare(cfg, Path("runs/a"), resume=False)   # config, machine, data, model, checkpoint

Whether the run starts fresh or resumes follows the folder (``run_folder.decide``): an interrupted run
resumes by itself with its own config, ``resume=True`` continues any run with a last.ckpt.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.training.checkpoint import check_compatible, data_info_changes, load_checkpoint
from dimcollapse.training.config import RunConfig
from dimcollapse.training.datamodule import SSLDataModule
from dimcollapse.training.evaluate_run import EvalSettings
from dimcollapse.training.module import SSLModule
from dimcollapse.training.plan import RunPlan, plan_run
from dimcollapse.training.preflight import check_machine
from dimcollapse.training.resume import resume_config, stored_config
from dimcollapse.training.run_folder import FolderState, Mode, decide, last_checkpoint

OVERRIDE_LR_MAX = 100.0  # --override-lr accepts (0, OVERRIDE_LR_MAX]; the NaN stop advises a value in it


@dataclass
class Prepared:
    """Everything a run needs, built and checked before its folder is written."""

    plan: RunPlan  # the one carrier from the config to the trainer, the callbacks and the final metrics
    module: SSLModule  # built from ``plan.parts``
    previous: dict[str, Any] | None
    lr_change: dict[str, float] | None
    mode: Mode = field(default_factory=lambda: Mode(resume=False, auto=False))

    @property
    def cfg(self) -> RunConfig:
        """The run's config (the checkpoint's own on a resume)."""
        return self.plan.config

    @property
    def dm(self) -> SSLDataModule:
        """The plan's data module."""
        return self.plan.datamodule

    @property
    def evaluation(self) -> EvalSettings:
        """The evaluation settings of the plan."""
        return self.plan.evaluation

    @property
    def start_step(self) -> int:
        """The global step the run starts from (0, or the step of the resumed checkpoint)."""
        return int(self.previous.get("global_step", 0)) if self.previous is not None else 0


def _check_out(out: Path) -> None:
    """The output folder can be created and written (checked without creating anything)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' is a file, not a folder; choose another --out.")
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into '{probe}' to create '{out}'; choose another --out.")


def _check_data_info(previous: dict[str, Any], dm: SSLDataModule, source: str) -> None:
    """The resumed data has the shape of the data the checkpoint was trained on."""
    saved = (previous.get("hyper_parameters") or {}).get("data_info") or {}
    diff = data_info_changes(saved, dm.info.__dict__)
    if diff:
        raise ConfigError(
            f"checkpoint '{source}' was trained on other data than data.root gives now ({', '.join(diff)}); "
            "point data.root at the data the run was trained on, or start a fresh run in another --out."
        )


def prepare(
    config: RunConfig,
    out: Path,
    resume: bool,
    override_lr: float | None = None,
    state: FolderState | None = None,
) -> Prepared:
    """Validate the config, the machine and the checkpoint, plan the run (``plan_run``: data, model,
    settings); write nothing. ``state`` is the folder as seen before (default: now)."""
    _check_out(out)
    last = last_checkpoint(out)
    mode = decide(out, state if state is not None else FolderState.of(out), resume)
    if override_lr is not None and not resume:
        raise ConfigError("--override-lr applies to --resume only; for a new run set optim.lr=VALUE.")
    if override_lr is not None and not (math.isfinite(override_lr) and 0 < override_lr <= OVERRIDE_LR_MAX):
        raise ConfigError(f"--override-lr must be a number in (0, {OVERRIDE_LR_MAX:g}], got {override_lr!r}.")
    previous: dict[str, Any] | None = None
    lr_change: dict[str, float] | None = None
    cfg = config
    if mode.resume:
        previous = load_checkpoint(last)
        stored = stored_config(previous, str(last))
        cfg = resume_config(stored, config, override_lr, str(last), auto=mode.auto)
        if override_lr is not None:
            step = int(previous.get("global_step", 0))
            lr_change = {"from": float(stored.optim.lr), "to": float(override_lr), "at_step": step}
    check_machine(cfg)
    plan = plan_run(cfg)
    module = SSLModule.from_plan(plan)
    if previous is not None:
        check_compatible(module.state_dict(), previous["state_dict"], str(last))
        _check_data_info(previous, plan.datamodule, str(last))
    return Prepared(plan, module, previous, lr_change, mode)
