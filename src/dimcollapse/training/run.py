"""One training run end to end: config -> Lightning fit -> evaluation -> files in the output folder.

    metrics = train(load_config("configs/fmnist/simclr_mlp.yaml"), "runs/simclr")

The folder gets config.yaml, metrics.json (flat keys, accuracies as fractions), monitor.json,
logs/ (CSV), tb/ (TensorBoard) and checkpoints/ (last.ckpt during training, final.ckpt at the end).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import signal
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import Logger

import dimcollapse
from dimcollapse.errors import ConfigError, DivergedError, InputError
from dimcollapse.records import RunRecord, write_record
from dimcollapse.training.callbacks import CollapseMonitor, GracefulStop, LrOverride, OnlineProbe
from dimcollapse.training.checkpoint import (
    AtomicCheckpointIO,
    FiniteModelCheckpoint,
    check_compatible,
    data_info_changes,
    describe_bad,
    load_checkpoint,
    save_if_finite,
)
from dimcollapse.training.config import RunConfig, to_yaml
from dimcollapse.training.datamodule import SSLDataModule
from dimcollapse.training.evaluate_run import EvalData, EvalSettings, evaluate_module
from dimcollapse.training.loggers import build_loggers
from dimcollapse.training.module import SSLModule
from dimcollapse.training.plan import RunPlan, plan_run
from dimcollapse.training.precision import choose_precision
from dimcollapse.training.preflight import check_machine, clean_stale_temp_files
from dimcollapse.training.resume import resume_config, stored_config
from dimcollapse.training.run_record import components_used, training_record
from dimcollapse.utils.atomic import atomic_write_text, ensure_writable_dir

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
    names = [n for n in cfg.trainer.loggers if cfg.trainer.tensorboard or n != "tensorboard"]
    return build_loggers(names, out, cfg.name)


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
        precision=choose_precision(t.precision, t.accelerator),  # type: ignore[arg-type]
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
            bad = save_if_finite(trainer, path)
            if bad:
                step = int(trainer.global_step)
                raise DivergedError("the final state holds NaN/Inf", step, describe_bad(bad))


def _progress_bar() -> L.Callback:
    try:
        return RichProgressBar(leave=True)
    except ModuleNotFoundError:
        return TQDMProgressBar()


@dataclass
class Prepared:
    """Everything a run needs, built and checked before its folder is written."""

    cfg: RunConfig
    dm: SSLDataModule
    module: SSLModule
    previous: dict[str, Any] | None
    lr_change: dict[str, float] | None
    plan: RunPlan  # the one carrier from the config to the trainer, the callbacks and the final metrics

    @property
    def evaluation(self) -> EvalSettings:
        """The evaluation settings of the plan."""
        return self.plan.evaluation


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


def prepare(config: RunConfig, out: Path, resume: bool, override_lr: float | None = None) -> Prepared:
    """Validate the config, the machine and the checkpoint, plan the run (``plan_run``: data, model,
    settings); write nothing."""
    _check_out(out)
    last = out / "checkpoints" / LAST
    if resume and not last.is_file():
        raise InputError(
            f"nothing to resume: '{last}' does not exist. Run without --resume to start training."
        )
    if not resume and last.is_file():
        raise InputError(
            f"'{out}' already holds a run ({last}); pass --resume to continue it or choose another --out."
        )
    if override_lr is not None and not resume:
        raise ConfigError("--override-lr applies to --resume only; for a new run set optim.lr=VALUE.")
    if override_lr is not None and not (math.isfinite(override_lr) and 0 < override_lr <= 100):
        raise ConfigError(f"--override-lr must be a number in (0, 100], got {override_lr!r}.")
    previous: dict[str, Any] | None = None
    lr_change: dict[str, float] | None = None
    cfg = config
    if resume:
        previous = load_checkpoint(last)
        stored = stored_config(previous, str(last))
        cfg = resume_config(stored, config, override_lr, str(last))
        if override_lr is not None:
            step = int(previous.get("global_step", 0))
            lr_change = {"from": float(stored.optim.lr), "to": float(override_lr), "at_step": step}
    check_machine(cfg)
    plan = plan_run(cfg)
    dm, module = plan.datamodule, SSLModule.from_plan(plan)
    if previous is not None:
        check_compatible(module.state_dict(), previous["state_dict"], str(last))
        _check_data_info(previous, dm, str(last))
    return Prepared(cfg, dm, module, previous, lr_change, plan)


def _diverged(e: DivergedError, cfg: RunConfig, ckpt: FiniteModelCheckpoint, out: Path) -> DivergedError:
    """The divergence error with the step, the kept checkpoint and a fix that works."""
    last = out / "checkpoints" / LAST
    lower = f"{cfg.optim.lr / 10:.3g}"
    if e.what == "the probe embeddings":
        head = f"the monitor's probe embeddings became non-finite at step {e.step}"
    elif e.what.startswith(("objective", "regularizer", "the sum")) or not e.what:
        head = f"the loss became non-finite at step {e.step} (from {e.what or 'the sum of terms'})"
    else:
        head = f"the model state became non-finite at step {e.step} ({e.what})"
    first = ""
    if ckpt.first_bad is not None and ckpt.first_bad[0] != e.step:
        step, bad = ckpt.first_bad
        first = f" The state first held NaN/Inf at step {step} ({describe_bad(bad)})."
    if last.is_file():
        at = f" (step {ckpt.last_good_step})" if ckpt.last_good_step is not None else ""
        keep = f"The last good checkpoint{at} is kept at '{last}'."
        fix = (
            "To continue from it with a lower learning rate, rerun the same command with "
            f"--resume --override-lr {lower}."
        )
    else:
        keep = "No checkpoint was written yet."
        fix = f"Rerun with a lower learning rate (optim.lr={lower}) or more warm-up (optim.warmup_epochs)."
    return DivergedError(f"{head}; training stopped.{first} {keep} {fix}", e.step, e.what)


@dataclass
class _Watchers:
    """The callbacks of one run that ``train`` reads back after fitting."""

    callbacks: list[L.Callback]
    checkpointer: FiniteModelCheckpoint
    monitor: CollapseMonitor | None = None
    probe: OnlineProbe | None = None


def _callbacks(prep: Prepared, out: Path, extra: list[L.Callback] | None) -> _Watchers:
    """Monitor, online probe, checkpoints (finite only, final, on signals), lr override, progress bar."""
    plan, dm, module = prep.plan, prep.dm, prep.module
    mon, trainer_cfg = plan.monitor, plan.trainer
    ckpt_dir = out / "checkpoints"
    callbacks: list[L.Callback] = []
    monitor: CollapseMonitor | None = None
    if mon.enabled and dm.probe_index.numel() >= 4:
        monitor = CollapseMonitor(
            dm.probe_batch()[0],
            every_n_steps=mon.every_n_steps,
            warn_fraction=mon.warn_fraction,
            lid_k=mon.lid_k,
            weight_spectra=mon.weight_spectra,
            out_path=out / "monitor.json",
            max_share=mon.max_share,
        )
        callbacks.append(monitor)
    probe: OnlineProbe | None = None
    if plan.evaluation.online_probe:
        out_dim: Any = module.model.backbone.out_dim
        probe = OnlineProbe(int(out_dim), dm.info.num_classes, plan.evaluation.online_probe_lr)
        callbacks.append(probe)
    checkpointer = FiniteModelCheckpoint(
        dirpath=str(ckpt_dir),
        every_n_train_steps=trainer_cfg.checkpoint_every,
        save_top_k=0,
        save_last=True,
        save_on_train_epoch_end=False,
        enable_version_counter=False,
    )
    callbacks += [
        checkpointer,
        SaveFinal([ckpt_dir / FINAL, ckpt_dir / LAST]),
        GracefulStop(ckpt_dir / LAST, out),
    ]
    if prep.lr_change is not None:
        callbacks.append(LrOverride(prep.lr_change["from"], prep.lr_change["to"]))
    if trainer_cfg.progress_bar:
        callbacks.append(_progress_bar())
    callbacks.extend(extra or [])
    return _Watchers(callbacks, checkpointer, monitor, probe)


def _fit(trainer: L.Trainer, prep: Prepared, watch: _Watchers, out: Path, resume: bool) -> float:
    """trainer.fit (resuming from last.ckpt when asked); a divergence becomes one message with the fix."""
    handlers = {s: signal.getsignal(s) for s in GRACEFUL_SIGNALS}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings(
            "ignore", message=".*resuming from a checkpoint that ended before the epoch.*"
        )
        t0 = time.perf_counter()
        last = out / "checkpoints" / LAST
        try:
            trainer.fit(prep.module, datamodule=prep.dm, ckpt_path=str(last) if resume else None)
        except DivergedError as e:
            raise _diverged(e, prep.cfg, watch.checkpointer, out) from None
        finally:
            _restore_signals(handlers)
        return time.perf_counter() - t0


def train(
    config: RunConfig,
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    extra_callbacks: list[L.Callback] | None = None,
    override_lr: float | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``out_dir`` (continuing its last.ckpt when ``resume``); return the metrics.

    Everything is validated first (config, machine, data, model, checkpoint); nothing is written into
    ``out_dir`` before. A resumed run uses the checkpoint's config (``override_lr`` changes its lr).
    """
    out = Path(out_dir)
    prep = prepare(config, out, resume, override_lr)
    cfg, dm, module = prep.cfg, prep.dm, prep.module
    out = ensure_writable_dir(out)
    clean_stale_temp_files(out)
    atomic_write_text(out / "config.yaml", to_yaml(prep.plan.config))
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    watch = _callbacks(prep, out, extra_callbacks)
    trainer = build_trainer(
        cfg, out, module.total_steps, watch.callbacks, steps_per_epoch=dm.info.steps_per_epoch
    )
    fit_s = _fit(trainer, prep, watch, out, resume)
    if not trainer.is_global_zero:
        return {}
    record = RunRecord.from_fields(_final_metrics(trainer, prep, watch, out, resume, fit_s))
    write_record(out / "metrics.json", record)
    return record.to_json()


def _final_metrics(
    trainer: L.Trainer, prep: Prepared, watch: _Watchers, out: Path, resume: bool, fit_s: float
) -> dict[str, Any]:
    """Evaluation of the final model plus what was trained, how long, and the monitor's summary."""
    cfg, dm, module, monitor, plan = prep.cfg, prep.dm, prep.module, watch.monitor, prep.plan
    ckpt_dir = out / "checkpoints"
    start_step, time_before = 0, 0.0
    if prep.previous is not None:
        start_step = int(prep.previous.get("global_step", 0))
        time_before = float(prep.previous.get("dimcollapse_train_time_s", 0.0))
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
    metrics: dict[str, Any] = evaluate_module(module, EvalData.from_datamodule(dm), prep.evaluation).fields()
    metrics.update(
        {
            **training_record(
                trainer, steps, module.total_steps, dm.info.steps_per_epoch, cfg.optim.max_time_minutes
            ),
            "train_time_s": train_s,
            "fit_time_s": fit_s,
            "images_per_s": (steps - start_step) * plan.data.batch_size * plan.world_size / session_s,
            "seed": plan.trainer.seed,
            "versions": versions(),
            "git_commit": git_commit(),
            "resumed": bool(resume),
            "components": components_used(cfg),
        }
    )
    if prep.lr_change is not None:
        metrics["lr_override"] = prep.lr_change
    if monitor is not None:
        metrics["monitor_time_s"] = monitor.time_s
        metrics["monitor_fraction"] = monitor.time_s / max(train_s, 1e-9)
        metrics["monitor_warnings"] = monitor.warnings
        metrics["monitor_skipped"] = monitor.recorder.budget.skipped
        metrics["monitor_verdict"] = monitor.verdict()
        monitor.write()
    probe = watch.probe
    last_top1 = probe.last_batch_accuracy() if probe is not None else None
    if last_top1 is not None:
        metrics["online_probe_last_batch_top1"] = last_top1
    return metrics


GRACEFUL_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _restore_signals(handlers: dict[Any, Any]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for s, h in handlers.items():
        if h is not None:
            signal.signal(s, h)
