"""One training run end to end: config -> Lightning fit -> evaluation -> files in the output folder.

    metrics = train(load_config("configs/fmnist/simclr_mlp.yaml"), "runs/simclr")

The folder gets config.yaml, metrics.json (flat keys, accuracies as fractions), monitor.json,
logs/ (CSV), tb/ (TensorBoard) and checkpoints/ (last.ckpt during training, final.ckpt at the end).
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

import dimcollapse
from dimcollapse.errors import InputError
from dimcollapse.training.callbacks import CollapseMonitor, OnlineProbe
from dimcollapse.training.checkpoint import (
    AtomicCheckpointIO,
    FiniteModelCheckpoint,
    check_compatible,
    load_checkpoint,
)
from dimcollapse.training.config import RunConfig, from_dict, to_dict, to_yaml
from dimcollapse.training.datamodule import SSLDataModule, planned_world_size
from dimcollapse.training.evaluate_run import evaluate_module
from dimcollapse.training.module import SSLModule
from dimcollapse.training.run_record import training_record
from dimcollapse.utils.atomic import atomic_write_json, atomic_write_text, ensure_writable_dir
from dimcollapse.utils.seeding import seed_everything

LAST = "last.ckpt"
FINAL = "final.ckpt"


def git_commit() -> str:
    """The git commit of the dimcollapse source tree ('unknown' outside a checkout)."""
    here = Path(dimcollapse.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def versions() -> dict[str, str]:
    """Versions of python, torch, lightning and dimcollapse."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "dimcollapse": dimcollapse.__version__,
    }


class _DropAdverts(logging.Filter):
    """Drops Lightning's '💡 Tip: try installing ...' advertisements from the run's console output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropAdverts())
# torch 2.13 deprecates a pytree idiom that Lightning 2.6 still uses; not actionable for our users
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def _loggers(cfg: RunConfig, out: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(save_dir=str(out), name="logs")]
    if cfg.trainer.tensorboard:
        try:
            loggers.append(TensorBoardLogger(save_dir=str(out), name="tb", default_hp_metric=False))
        except ModuleNotFoundError:  # tensorboard / tensorboardX missing: CSV only
            logging.getLogger("dimcollapse").warning("tensorboard is not installed; logging to CSV only")
    return loggers


def build_trainer(
    cfg: RunConfig,
    out: Path,
    total_steps: int,
    callbacks: list[L.Callback],
    loggers: list[Logger] | None = None,
    steps_per_epoch: int | None = None,
) -> L.Trainer:
    """A Lightning Trainer for ``cfg``: step-bounded, atomic checkpoints, CSV + TensorBoard logs.

    ``max_steps`` ends the run; ``max_epochs`` (when ``steps_per_epoch`` is known) is the matching epoch
    count, so the progress bar shows ``Epoch e/E`` instead of an open-ended count.
    """
    t = cfg.trainer
    max_epochs = -(-total_steps // steps_per_epoch) if steps_per_epoch else -1
    max_time = timedelta(minutes=cfg.optim.max_time_minutes) if cfg.optim.max_time_minutes else None
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        sync_batchnorm=t.sync_batchnorm and t.accelerator != "cpu",  # on CPU: GlobalBatchNorm (module.py)
        max_epochs=max_epochs,
        max_steps=total_steps,
        max_time=max_time,
        log_every_n_steps=t.log_every,
        logger=loggers if loggers is not None else _loggers(cfg, out),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        deterministic=False,
        default_root_dir=str(out),
    )


class SaveFinal(L.Callback):
    """Writes the final checkpoint(s) when training ends normally (inside the training processes)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the final state to every path (atomic writes through the CheckpointIO plugin)."""
        for path in self.paths:
            trainer.save_checkpoint(str(path), weights_only=False)


def _progress_bar() -> L.Callback:
    try:
        return RichProgressBar(leave=True)
    except ModuleNotFoundError:
        return TQDMProgressBar()


def train(
    config: RunConfig,
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    extra_callbacks: list[L.Callback] | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``out_dir`` (continuing its last.ckpt when ``resume``); return the metrics."""
    out = ensure_writable_dir(out_dir)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / LAST
    if resume and not last.is_file():
        raise InputError(
            f"nothing to resume: '{last}' does not exist. Run without --resume to start training."
        )
    if not resume and last.is_file():
        raise InputError(
            f"'{out}' already holds a run ({last}); pass --resume to continue it or choose another --out."
        )
    cfg = config
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    seed_everything(cfg.trainer.seed)
    dm = SSLDataModule(cfg, world_size=planned_world_size(cfg))
    dm.setup("fit")
    module = SSLModule(to_dict(cfg), dm.info.__dict__)
    if resume:
        check_compatible(module.state_dict(), load_checkpoint(last)["state_dict"], str(last))

    monitor: CollapseMonitor | None = None
    callbacks: list[L.Callback] = []
    if cfg.monitor.enabled and dm.probe_index.numel() >= 4:
        monitor = CollapseMonitor(
            dm.probe_batch()[0],
            every_n_steps=cfg.monitor.every_n_steps,
            warn_fraction=cfg.monitor.warn_fraction,
            lid_k=cfg.monitor.lid_k,
            weight_spectra=cfg.monitor.weight_spectra,
            out_path=out / "monitor.json",
        )
        callbacks.append(monitor)
    probe: OnlineProbe | None = None
    if cfg.eval.online_probe:
        out_dim: Any = module.model.backbone.out_dim
        probe = OnlineProbe(int(out_dim), dm.info.num_classes, cfg.eval.online_probe_lr)
        callbacks.append(probe)
    callbacks.append(
        FiniteModelCheckpoint(
            dirpath=str(ckpt_dir),
            every_n_train_steps=cfg.trainer.checkpoint_every,
            save_top_k=0,
            save_last=True,
            save_on_train_epoch_end=False,
            enable_version_counter=False,
        )
    )
    callbacks.append(SaveFinal([ckpt_dir / FINAL, last]))
    if cfg.trainer.progress_bar:
        callbacks.append(_progress_bar())
    callbacks.extend(extra_callbacks or [])
    trainer = build_trainer(cfg, out, module.total_steps, callbacks, steps_per_epoch=dm.info.steps_per_epoch)
    start_step = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings(
            "ignore", message=".*resuming from a checkpoint that ended before the epoch.*"
        )
        t0 = time.perf_counter()
        time_before = 0.0
        if resume:
            previous = load_checkpoint(last)
            start_step = int(previous.get("global_step", 0))
            time_before = float(previous.get("dimcollapse_train_time_s", 0.0))
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
        fit_s = time.perf_counter() - t0
    if not trainer.is_global_zero:
        return {}
    if not (ckpt_dir / FINAL).is_file():  # resumed at the last step: fit had nothing left to train
        trainer.save_checkpoint(str(ckpt_dir / FINAL), weights_only=False)
    final = load_checkpoint(ckpt_dir / FINAL)
    steps = int(final.get("global_step", 0))
    if int(trainer.global_step) != steps:  # training ran in spawned processes: take over their results
        module.load_state_dict(final["state_dict"])
        if monitor is not None and monitor.state_key in final.get("callbacks", {}):
            monitor.load_state_dict(final["callbacks"][monitor.state_key])
    train_s = float(final.get("dimcollapse_train_time_s", module.train_time_s))
    session_s = max(train_s - time_before, 1e-9)
    world = planned_world_size(cfg)
    metrics = evaluate_module(module, dm, cfg)
    metrics.update(
        {
            **training_record(
                trainer, steps, module.total_steps, dm.info.steps_per_epoch, cfg.optim.max_time_minutes
            ),
            "train_time_s": train_s,
            "fit_time_s": fit_s,
            "images_per_s": (steps - start_step) * cfg.data.batch_size * world / session_s,
            "seed": cfg.trainer.seed,
            "versions": versions(),
            "git_commit": git_commit(),
            "resumed": bool(resume),
        }
    )
    if monitor is not None:
        metrics["monitor_time_s"] = monitor.time_s
        metrics["monitor_fraction"] = monitor.time_s / max(train_s, 1e-9)
        metrics["monitor_warnings"] = monitor.warnings
        monitor.write()
    if probe is not None and module.last_r is not None and module.last_y is not None:
        metrics["online_probe_last_batch_top1"] = probe.accuracy(module.last_r, module.last_y)
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def load_run_config(checkpoint: dict[str, Any]) -> RunConfig:
    """The RunConfig stored in a checkpoint's hyper-parameters."""
    hp = checkpoint.get("hyper_parameters") or {}
    if "config" not in hp or "data_info" not in hp:
        raise InputError("checkpoint holds no dimcollapse config; it was not written by dimcollapse train.")
    return from_dict(hp["config"])
