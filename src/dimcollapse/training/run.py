"""One training run end to end: config -> Lightning fit -> evaluation -> files in the output folder.

    metrics = train(load_config("configs/fmnist/simclr_mlp.yaml"), "runs/simclr")

The folder gets config.yaml, metrics.json (flat keys, accuracies as fractions), progress.json, monitor.json,
logs/ (CSV), tb/ (TensorBoard) and checkpoints/ (last.ckpt during training, final.ckpt at the end). The
job's rank 0 holds the folder's lock (.train.lock) from the end of the checks to the end of the run; an
interrupted run in the folder (last.ckpt, no metrics.json) is resumed by itself (``run_folder``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import Logger

from dimcollapse.errors import DivergedError
from dimcollapse.records import RunRecord, write_record
from dimcollapse.training.callbacks import (
    CollapseMonitor,
    GracefulStop,
    KernelFlags,
    LrOverride,
    OnlineProbe,
)
from dimcollapse.training.callbacks.progress import ProgressWriter
from dimcollapse.training.checkpoint import (
    AtomicCheckpointIO,
    FiniteModelCheckpoint,
    describe_bad,
    save_if_finite,
)
from dimcollapse.training.cluster import JobInfo, cluster_plugins, job_info, launch_rank
from dimcollapse.training.config import RunConfig, to_yaml
from dimcollapse.training.loggers import build_loggers
from dimcollapse.training.precision import choose_precision
from dimcollapse.training.preflight import clean_stale_temp_files
from dimcollapse.training.prepared import OVERRIDE_LR_MAX, Prepared, prepare
from dimcollapse.training.run_folder import FINAL, LAST, LOCK, PROGRESS, FolderState, check_unchanged
from dimcollapse.training.run_results import (
    diverged_error,
    evaluate_on_every_rank,
    final_metrics,
    git_commit,
    versions,
)
from dimcollapse.training.trainer_settings import TrainerSettings
from dimcollapse.utils.atomic import atomic_write_text, ensure_writable_dir
from dimcollapse.utils.distributed import end_process_group, is_distributed
from dimcollapse.utils.lock import folder_lock

__all__ = [
    "FINAL",
    "LAST",
    "OVERRIDE_LR_MAX",
    "Prepared",
    "build_trainer",
    "git_commit",
    "prepare",
    "train",
    "versions",
]

log = logging.getLogger("dimcollapse.train")


class _DropAdverts(logging.Filter):
    """Drops Lightning's '💡 Tip: try installing ...' advertisements from the run's console output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropAdverts())
# torch 2.13 deprecates a pytree idiom that Lightning 2.6 still uses; not actionable for our users
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def build_trainer(
    settings: TrainerSettings,
    out: Path,
    callbacks: list[L.Callback],
    loggers: list[Logger] | None = None,
) -> L.Trainer:
    """A Lightning Trainer of the run plan's ``settings``: step-bounded, atomic checkpoints, CSV +
    TensorBoard logs (``settings.loggers``).

    ``max_steps`` ends the run; ``max_epochs`` (when the steps per epoch are known) is the matching epoch
    count, so the progress bar shows ``Epoch e/E`` instead of an open-ended count.
    """
    t = settings
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=choose_precision(t.precision, t.accelerator),  # type: ignore[arg-type]
        sync_batchnorm=t.sync_batchnorm,  # on CPU: GlobalBatchNorm (module.py)
        num_nodes=t.num_nodes,
        accumulate_grad_batches=t.accumulate_grad_batches,
        max_epochs=t.max_epochs,
        max_steps=t.total_steps,
        max_time=t.max_time,
        log_every_n_steps=t.log_every,
        logger=loggers if loggers is not None else build_loggers(list(t.loggers), out, t.run_name),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO(), *cluster_plugins()],
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
class _Watchers:
    """The callbacks of one run that ``train`` reads back after fitting."""

    callbacks: list[L.Callback]
    checkpointer: FiniteModelCheckpoint
    monitor: CollapseMonitor | None = None
    probe: OnlineProbe | None = None


def _callbacks(
    prep: Prepared, out: Path, extra: list[L.Callback] | None, stop: GracefulStop, progress: ProgressWriter
) -> _Watchers:
    """Monitor, online probe, checkpoints (finite only, final, on signals), progress.json, lr override,
    progress bar."""
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
        out_dim = module.model.backbone.out_dim
        probe = OnlineProbe(out_dim, dm.info.num_classes, plan.evaluation.online_probe_lr)
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
        KernelFlags(trainer_cfg.kernels, trainer_cfg.device),
        checkpointer,
        SaveFinal([ckpt_dir / FINAL, ckpt_dir / LAST]),
        stop,
        progress,
    ]
    if prep.lr_change is not None:
        callbacks.append(LrOverride(prep.lr_change["from"], prep.lr_change["to"]))
    if trainer_cfg.progress_bar:
        callbacks.append(_progress_bar())
    callbacks.extend(extra or [])
    return _Watchers(callbacks, checkpointer, monitor, probe)


def _fit(trainer: L.Trainer, prep: Prepared, watch: _Watchers, out: Path, stop: GracefulStop) -> float:
    """trainer.fit (resuming from last.ckpt when asked); a divergence becomes one message with the fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings(
            "ignore", message=".*resuming from a checkpoint that ended before the epoch.*"
        )
        t0 = time.perf_counter()
        last = out / "checkpoints" / LAST
        try:
            trainer.fit(prep.module, datamodule=prep.dm, ckpt_path=str(last) if prep.mode.resume else None)
        except DivergedError as e:
            end_process_group()
            raise diverged_error(e, prep.plan.parts.settings.optim.lr, watch.checkpointer, out) from None
        except BaseException:
            end_process_group()
            raise
        finally:
            stop.install()  # ours again after Lightning's signal connector restored its own
        return time.perf_counter() - t0  # the process group lives on for the final evaluation


def train(
    config: RunConfig,
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    extra_callbacks: list[L.Callback] | None = None,
    override_lr: float | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``out_dir`` (continuing its last.ckpt when ``resume``, or by itself when the
    folder holds an interrupted run); return the metrics (an empty dict on ranks other than 0).

    Everything is validated first (config, machine, data, model, checkpoint); nothing is written into
    ``out_dir`` before, and then only by the job's rank 0 under the folder's lock. A resumed run uses the
    checkpoint's config (``override_lr`` changes its lr). A stop signal on any rank stops every rank after
    the same step with a resumable checkpoint (callbacks/graceful_stop.py).
    """
    out = Path(out_dir)
    job = job_info()
    stop = GracefulStop(out / "checkpoints" / LAST, out, job)
    stop.install()  # from now on a signal is kept for the first step boundary (SIGUSR1 no longer kills)
    try:
        before = FolderState.of(out)
        prep = prepare(config, out, resume, override_lr, state=before)
        rank0 = launch_rank() == 0
        if rank0:
            ensure_writable_dir(out)
        with folder_lock(out / LOCK, "run folder") if rank0 else contextlib.nullcontext():
            if rank0:
                check_unchanged(out, before)
            return _run(prep, out, job, stop, extra_callbacks, rank0)
    finally:
        stop.restore()


def _run(
    prep: Prepared,
    out: Path,
    job: JobInfo,
    stop: GracefulStop,
    extra: list[L.Callback] | None,
    rank0: bool,
) -> dict[str, Any]:
    """The checked run: folder files (rank 0), fit, the final evaluation and metrics.json (rank 0)."""
    plan, module = prep.plan, prep.module
    if rank0:
        clean_stale_temp_files(out)
        atomic_write_text(out / "config.yaml", to_yaml(prep.plan.config))
        if prep.mode.auto:
            log.warning(
                "resuming the interrupted run in %s from step %d of %d (%s)",
                out, prep.start_step, module.total_steps, out / "checkpoints" / LAST,
            )  # fmt: skip
    progress = ProgressWriter(out / PROGRESS, job, module.total_steps, plan.trainer.log_every, enabled=rank0)
    try:
        progress.begin(prep.start_step)
        if plan.trainer.num_threads:
            torch.set_num_threads(plan.trainer.num_threads)
        watch = _callbacks(prep, out, extra, stop, progress)
        trainer = build_trainer(plan.trainer, out, watch.callbacks)
        fit_s = _fit(trainer, prep, watch, out, stop)
        stop.after_training = True  # a signal now stops at once: last.ckpt holds the final state
        try:  # every rank of a live process group evaluates its share together (evaluate_run.py)
            evaluation = None
            if is_distributed():
                evaluation = evaluate_on_every_rank(prep, trainer.strategy.root_device)
        finally:
            end_process_group()
        if not trainer.is_global_zero:
            stop.after_training = False
            return {}
        fields = final_metrics(trainer, prep, watch.monitor, watch.probe, out, fit_s, evaluation)
        record = RunRecord.from_fields(fields)
        write_record(out / "metrics.json", record)
        metrics = record.to_json()
        stop.after_training = False
    except BaseException as e:
        stop.after_training = False
        progress.stopped(e)
        raise
    progress.write("done", record.training.steps)
    return metrics
