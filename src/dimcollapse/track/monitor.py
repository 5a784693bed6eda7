"""``CollapseMonitor``: a Lightning callback that tracks collapse in ANY LightningModule.

    monitor = CollapseMonitor(probe_images, embed=lambda m, x: m.backbone(x), every_n_steps=50)
    trainer = L.Trainer(callbacks=[monitor])

After the first optimizer step and every ``every_n_steps`` steps, process 0 embeds the fixed probe
(eval mode, no gradient) and records the catalogue metrics of every embed output, the covariance
spectra, the weight-layer statistics (``layers``: names / patterns, default every Linear / Conv /
attention projection), and LiDAR when ``augment`` is given (``recorder.py`` lists the record keys).
Scalars go to every logger of the Trainer as ``monitor/<key>``; spectra also as TensorBoard
and W&B histograms and MLflow JSON artifacts.
The history is written to ``out_path`` (default ``<trainer.default_root_dir>/monitor.json``)
at the end of training or on an exception, and kept in checkpoints. With ``stop_on_collapse=True``,
training stops (like ``EarlyStopping``) after ``patience`` collapse warnings in a row (``rule.py``: the
watched shape metric or the scale signals below a fraction of their best after a warm-up, default
``max(2 x every_n_steps, 100, 5% of the run's steps)``); ``verdict()`` is the one-line summary.

Several monitors fit in one Trainer when each has its own ``name`` (its checkpoint state key, its
``monitor-<name>.json`` and its logger prefix ``monitor/<name>/``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from torch import nn

from dimcollapse.records.monitor import MonitorRecord, record_spectra
from dimcollapse.records.schema import JsonObject
from dimcollapse.track.probe import Embed
from dimcollapse.track.recorder import CollapseRecorder, RecorderOptions, log, scalar_items
from dimcollapse.utils.options import int_option

if TYPE_CHECKING:
    from typing import Unpack


def log_spectra(lg: Any, spectra: dict[str, list[float]], step: int) -> None:
    """Spectra to a logger: TensorBoard / W&B histograms, an MLflow JSON artifact (others: none)."""
    from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

    experiment: Any = getattr(lg, "experiment", None)
    if isinstance(lg, WandbLogger):
        import wandb

        histograms = {tag: wandb.Histogram(np.clip(v, 0, None).tolist()) for tag, v in spectra.items()}
        experiment.log({**histograms, "trainer/global_step": step})
    elif isinstance(lg, MLFlowLogger):
        experiment.log_dict(lg.run_id, {"step": step, **spectra}, f"monitor/spectra_step{step:08d}.json")
    elif callable(getattr(experiment, "add_histogram", None)):
        for tag, v in spectra.items():
            experiment.add_histogram(tag, torch.tensor(v).clamp_min(0), step)


class CollapseMonitor(L.Callback):
    """Collapse metrics of a fixed probe every n optimizer steps (see the module docstring)."""

    def __init__(
        self,
        probe: Any,
        embed: Embed | None = None,
        every_n_steps: int = 50,
        log_spectra: bool = True,
        name: str | None = None,
        **options: Unpack[RecorderOptions],
    ) -> None:
        """``probe``: tensor or DataLoader; ``embed(module, x)`` -> tensor or dict (default module(x)).

        ``options``: ``recorder.RecorderOptions`` (layers, metrics, lid_k, warn_fraction, watch,
        stop_on_collapse, patience, weight_spectra, augment, n_views, out_path, annotate, weights_of);
        ``log_spectra`` adds TensorBoard histograms; ``name`` tells several monitors of one Trainer
        apart (state key, ``monitor-<name>.json``, logger prefix ``monitor/<name>/``).
        """
        super().__init__()
        if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[\w-]+", name)):
            from dimcollapse.errors import ConfigError

            raise ConfigError(f"name must be letters, digits, '-' or '_', got {name!r}.")
        self.every, self.name = int_option(every_n_steps, "every_n_steps", 1), name
        self.recorder = CollapseRecorder(probe, embed, **options)
        self.log_spectra = bool(log_spectra)
        self._last_step = -1

    # -- what run code reads ------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        """'CollapseMonitor' (older checkpoints' key) or, with a ``name``, one key per named monitor."""
        return "CollapseMonitor" if self.name is None else self._generate_state_key(name=self.name)

    @property
    def history(self) -> list[MonitorRecord]:
        """Every record so far."""
        return self.recorder.history

    @property
    def warnings(self) -> int:
        """Number of collapse warnings."""
        return self.recorder.warnings

    @property
    def time_s(self) -> float:
        """Seconds spent measuring."""
        return self.recorder.time_s

    @property
    def out_path(self) -> Path | None:
        """Where monitor.json goes."""
        return self.recorder.out_path

    def measure(self, module: nn.Module, step: int) -> MonitorRecord:
        """One record of the probe's metrics for ``module`` now (not kept in the history)."""
        return self.recorder.measure(module, step)

    def summary(self) -> JsonObject:
        """The monitor.json content."""
        return self.recorder.summary(self.every)

    def verdict(self) -> str:
        """One line, 'collapsing: yes/no (why)' (``track.verdict.collapse_verdict`` of the summary)."""
        return self.recorder.verdict()

    def write(self) -> None:
        """Write monitor.json (atomically)."""
        self.recorder.write(self.every)

    # -- hooks --------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Default out_path: <default_root_dir>/monitor.json (monitor-<name>.json for a named monitor)."""
        if self.recorder.out_path is None:
            file = "monitor.json" if self.name is None else f"monitor-{self.name}.json"
            self.recorder.out_path = Path(trainer.default_root_dir) / file

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The default warm-up from the run's optimizer steps (``rule.default_warmup``)."""
        try:
            total: float | None = float(trainer.estimated_stepping_batches)
        except Exception:  # an iterable without length: the run's length is unknown
            total = None
        self.recorder.resolve_warmup(self.every, total)
        self.recorder.budget.begin()

    def _epoch(self, trainer: L.Trainer, step: int) -> float | None:
        per_epoch = trainer.num_training_batches
        if not isinstance(per_epoch, (int, float)) or not math.isfinite(per_epoch) or per_epoch <= 0:
            return None
        return step / max(1, int(per_epoch) // max(1, trainer.accumulate_grad_batches))

    def _measure(
        self, trainer: L.Trainer, pl_module: L.LightningModule, step: int, force: bool = False
    ) -> None:
        if not trainer.is_global_zero:  # one process measures (eval-mode forward, no collectives)
            return
        rec = self.recorder.record(pl_module, step, self._epoch(trainer, step), force)
        if rec is not None:
            self._log(trainer, rec, step)

    def _log(self, trainer: L.Trainer, rec: MonitorRecord, step: int) -> None:
        if trainer.logger is None:
            return
        prefix = "monitor" if self.name is None else f"monitor/{self.name}"
        scalars = scalar_items(rec, prefix)
        spectra = {f"{prefix}/{k}": v for k, v in record_spectra(rec).items()}
        for lg in trainer.loggers:
            lg.log_metrics(scalars, step=step)
            if self.log_spectra and spectra:
                log_spectra(lg, spectra, step)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Measure after the first step and every n steps (global_step counts finished optimizer steps)."""
        step = int(trainer.global_step)
        if step == self._last_step or (step != 1 and step % self.every != 0):
            return
        self._last_step = step
        self._measure(trainer, pl_module, step)
        if self.recorder.stop_on_collapse:  # every process takes process 0's decision
            stop = bool(trainer.strategy.broadcast(self.recorder.should_stop, src=0))
            if stop:
                trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure the final state (if the last step was not measured), write the history and log the
        verdict (a warning when collapsing, else info; logger ``dimcollapse.monitor``)."""
        if trainer.is_global_zero:
            self._measure(trainer, pl_module, int(trainer.global_step), force=True)
            self.write()
            verdict = self.verdict()  # the summary's line, also in monitor.json ("verdict")
            who = "" if self.name is None else f"{self.name}: "
            (log.warning if verdict.startswith("collapsing: yes") else log.info)("%s%s", who, verdict)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """Keep what was measured when training fails."""
        if trainer.is_global_zero:
            self.write()

    def state_dict(self) -> dict[str, Any]:
        """History and counters (saved in checkpoints, so a resumed run continues the history)."""
        return self.recorder.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the history from a checkpoint."""
        self.recorder.load_state_dict(state_dict)


__all__ = ["CollapseMonitor"]
