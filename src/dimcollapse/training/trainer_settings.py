"""The Lightning Trainer's settings of a run, resolved once from the config by ``plan_run``.

    settings = TrainerSettings.from_config(cfg, total_steps=600, steps_per_epoch=60)
    trainer = build_trainer(settings, out, callbacks)        # training/run.py

The trainer, the callbacks (checkpoint cadence, progress bar) and the final metrics (seed, nodes,
accumulation, time cap) read these values; nothing after the plan reads ``cfg.trainer`` again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dimcollapse.training.config import RunConfig
from dimcollapse.training.device_defaults import DeviceInfo, KernelChoices, choose_kernels, describe_device


@dataclass(frozen=True)
class TrainerSettings:
    """What the Trainer is built from: devices, precision, length (steps, epochs, time cap), logging.

    ``sync_batchnorm`` is Lightning's (CUDA) SyncBatchNorm: on CPU the module swaps in the all-reducing
    GlobalBatchNorm instead (``ModuleSettings.global_batchnorm``), so it is False there. ``loggers``
    are the logger names after ``trainer.tensorboard=false`` dropped TensorBoard.
    """

    accelerator: str
    devices: Any  # int, "auto", or a list of device indices (Lightning's ``devices``)
    strategy: str
    precision: str
    sync_batchnorm: bool
    num_nodes: int
    accumulate_grad_batches: int
    total_steps: int
    steps_per_epoch: int
    max_time_minutes: float | None
    log_every: int
    checkpoint_every: int
    progress_bar: bool
    loggers: tuple[str, ...]
    run_name: str
    seed: int
    num_threads: int | None
    device: DeviceInfo  # what the run trains on (this machine)
    kernels: KernelChoices  # channels_last, cudnn.benchmark, TF32, strided 1x1 form (device_defaults.py)

    @classmethod
    def from_config(
        cls,
        cfg: RunConfig,
        total_steps: int,
        steps_per_epoch: int,
        device: DeviceInfo | None = None,
        kernels: KernelChoices | None = None,
    ) -> TrainerSettings:
        """The trainer settings of ``cfg`` for a run of ``total_steps`` steps of ``steps_per_epoch``
        (``device``: default this machine's for trainer.accelerator; ``kernels``: its choices)."""
        t = cfg.trainer
        device = describe_device(str(t.accelerator)) if device is None else device
        return cls(
            accelerator=str(t.accelerator),
            devices=t.devices,
            strategy=str(t.strategy),
            precision=str(t.precision),
            sync_batchnorm=bool(t.sync_batchnorm and t.accelerator != "cpu"),
            num_nodes=int(t.num_nodes),
            accumulate_grad_batches=int(t.accumulate_grad_batches),
            total_steps=int(total_steps),
            steps_per_epoch=int(steps_per_epoch),
            max_time_minutes=cfg.optim.max_time_minutes,
            log_every=int(t.log_every),
            checkpoint_every=int(t.checkpoint_every),
            progress_bar=bool(t.progress_bar),
            loggers=tuple(n for n in t.loggers if t.tensorboard or n != "tensorboard"),
            run_name=str(cfg.name),
            seed=int(t.seed),
            num_threads=None if t.num_threads is None else int(t.num_threads),
            device=device,
            kernels=choose_kernels(t, device) if kernels is None else kernels,
        )

    @property
    def max_epochs(self) -> int:
        """Epochs matching ``total_steps`` (the progress bar shows ``Epoch e/E``); -1 when unknown."""
        spe = self.steps_per_epoch
        return -(-self.total_steps // spe) if spe else -1

    @property
    def max_time(self) -> timedelta | None:
        """Lightning's time cap (``optim.max_time_minutes``), None without one."""
        return timedelta(minutes=self.max_time_minutes) if self.max_time_minutes else None
